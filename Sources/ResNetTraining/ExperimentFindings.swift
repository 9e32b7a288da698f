import Foundation
import ResNetModels

/// What a campaign's finished runs say about the orderings the paper reports, as sentences
/// computed from the runs (never typed in): the README's "what held" comes from here.
///
/// - degradation: for each family, the deepest against the shallowest network of each seed:
///   at how many evaluation points the deeper one's training error was higher, from which
///   iteration on the sign never changed, and the end. The paper's Fig. 6: deeper plain nets
///   err more (degradation), deeper ResNets less.
/// - depth: the mean test error of each depth, and whether it fell at every step of depth
///   (the paper's Table 6: 8.75 > 7.51 > 7.17 > 6.97).
/// - shortcuts: the spread of the options' mean test errors against the spread between two
///   seeds of one option (the paper's Table 3: A, B, C within 0.84 points on ImageNet).
public enum ExperimentFindings {
    /// A finished run's outcome.
    public struct Outcome: Sendable, Equatable {
        public var run: String
        public var network: String
        public var seed: UInt64
        public var shortcut: ShortcutOption
        public var testError: Double?
        public init(run: String, network: String, seed: UInt64, shortcut: ShortcutOption, testError: Double?) {
            self.run = run
            self.network = network
            self.seed = seed
            self.shortcut = shortcut
            self.testError = testError
        }
    }

    /// The sentences for `experiment`, from the evaluation points of its runs (`rows`) and the
    /// outcomes of those that finished; empty when too little has finished to compare.
    public static func sentences(_ experiment: Experiment, rows: [ExperimentReport.Row], finished: [Outcome]) -> [String] {
        switch experiment {
        case .degradation: return degradation(rows: rows, finished: finished)
        case .depth: return depth(finished)
        case .shortcuts: return shortcuts(finished)
        case .transfer: return []
        }
    }

    static func degradation(rows: [ExperimentReport.Row], finished: [Outcome]) -> [String] {
        var sentences: [String] = []
        for (family, deeperShould) in [("plain", "higher"), ("resnet", "lower")] {
            for seed in Set(finished.map(\.seed)).sorted() {
                let runs = finished.filter { $0.seed == seed && $0.network.hasPrefix(family) && depthOf($0.network) > 0 }
                    .sorted { depthOf($0.network) < depthOf($1.network) }
                guard let shallow = runs.first, let deep = runs.last, depthOf(deep.network) > depthOf(shallow.network) else { continue }
                // The evaluation points both runs have (the same recipe evaluates at the same iterations).
                let shallowErrors = Dictionary(rows.filter { $0.run == shallow.run }.map { ($0.iteration, $0.trainError) }, uniquingKeysWith: { $1 })
                let pairs = rows.filter { $0.run == deep.run }.compactMap { r in shallowErrors[r.iteration].map { (r.iteration, r.trainError - $0) } }
                    .sorted { $0.0 < $1.0 }
                guard let end = pairs.last else { continue }
                let higher = pairs.filter { $0.1 > 0 }.count, lower = pairs.filter { $0.1 < 0 }.count
                let endSign = end.1 > 0 ? "higher" : end.1 < 0 ? "lower" : "equal"
                // The first iteration from which the sign never changed again.
                var since = end.0
                for (iteration, difference) in pairs.reversed() {
                    guard (difference > 0) == (end.1 > 0), (difference < 0) == (end.1 < 0) else { break }
                    since = iteration
                }
                let last = rows.filter { $0.run == deep.run }.max { $0.iteration < $1.iteration }
                let shallowLast = rows.filter { $0.run == shallow.run }.max { $0.iteration < $1.iteration }
                var sentence = "\(deep.network) against \(shallow.network) (seed \(seed)): training error "
                if since == pairs.first!.0, endSign != "equal" {
                    let margin = pairs.map { abs($0.1) }.min()!
                    sentence += String(format: "%@ at all %d evaluation points (by %.1f points or more)", endSign, pairs.count, margin)
                } else {
                    sentence += deeperShould == "higher" ? "higher at \(higher) of \(pairs.count) evaluation points" : "lower at \(lower) of \(pairs.count) evaluation points"
                    if endSign != "equal" { sentence += ", \(endSign) at every one from iteration \(grouped(since)) on" }
                }
                sentence += String(format: "; at the end %.2f%% against %.2f%%", last?.trainError ?? .nan, shallowLast?.trainError ?? .nan)
                if let a = deep.testError, let b = shallow.testError {
                    sentence += String(format: " (test error of the chosen checkpoints: %.2f%% against %.2f%%)", a, b)
                }
                let held = endSign == deeperShould && (deeperShould == "higher" ? higher : lower) * 2 > pairs.count
                sentence += ". The paper: deeper \(family == "plain" ? "plain networks" : "ResNets") err \(deeperShould == "higher" ? "more" : "less") — \(held ? "held" : "did not hold")."
                sentences.append(sentence)
            }
        }
        return sentences
    }

    static func depth(_ finished: [Outcome]) -> [String] {
        let means = meanTestErrors(finished, by: \.network).sorted { depthOf($0.key) < depthOf($1.key) }
        guard means.count >= 2 else { return [] }
        let chain = means.map { String(format: "%@ %.2f%%", $0.key, $0.mean) }.joined(separator: ", ")
        let rises = zip(means, means.dropFirst()).filter { $1.mean >= $0.mean }
        let seeds = seedSpread(finished, by: \.network)
        var sentence = "Mean test error by depth: \(chain). "
        if rises.isEmpty {
            sentence += "It fell at every step of depth, as in the paper's Table 6 — held"
        } else {
            sentence += "It did not fall at every step (" + rises.map { "\($0.key) to \($1.key): \(String(format: "%+.2f", $1.mean - $0.mean)) points" }.joined(separator: ", ") + ") — the paper's Table 6 falls at every step; did not hold"
        }
        let steps = zip(means, means.dropFirst()).map { abs($1.mean - $0.mean) }
        if let seeds, let smallest = steps.min() {
            sentence += String(format: ". Steps between neighbouring depths: %.2f to %.2f points; two seeds of one depth differ by up to %.2f", smallest, steps.max()!, seeds)
        }
        return [sentence + "."]
    }

    static func shortcuts(_ finished: [Outcome]) -> [String] {
        var sentences: [String] = []
        for network in Set(finished.map(\.network)).sorted() {
            let runs = finished.filter { $0.network == network }
            let means = meanTestErrors(runs, by: \.shortcut.rawValue).sorted { $0.key < $1.key }
            guard means.count >= 2 else { continue }
            let spread = means.map(\.mean).max()! - means.map(\.mean).min()!
            var sentence = "\(network): mean test error " + means.map { String(format: "option %@ %.2f%%", $0.key, $0.mean) }.joined(separator: ", ")
                + String(format: ", within %.2f points of each other", spread)
            if let seeds = seedSpread(runs, by: \.shortcut.rawValue) {
                let close = spread <= seeds
                sentence += String(format: "; two seeds of one option differ by up to %.2f. The paper (Table 3, ImageNet): A, B and C within 0.84 points — %@",
                                   seeds, close ? "held (the options differ less than the seeds do)" : "the options differ by more than the seeds do")
            }
            sentences.append(sentence + ".")
        }
        return sentences
    }

    /// Mean test error per key, over the finished runs that have one.
    static func meanTestErrors(_ outcomes: [Outcome], by key: (Outcome) -> String) -> [(key: String, mean: Double)] {
        Dictionary(grouping: outcomes.filter { $0.testError != nil }, by: key).map { k, runs in
            (k, runs.compactMap(\.testError).reduce(0, +) / Double(runs.count))
        }
    }

    /// The largest difference between two runs (seeds) of one key, or nil if no key has two.
    static func seedSpread(_ outcomes: [Outcome], by key: (Outcome) -> String) -> Double? {
        Dictionary(grouping: outcomes.filter { $0.testError != nil }, by: key).values
            .filter { $0.count >= 2 }
            .map { runs in
                let errors = runs.compactMap(\.testError)
                return errors.max()! - errors.min()!
            }
            .max()
    }

    /// `5265` -> `5,265`.
    static func grouped(_ n: Int) -> String {
        let digits = String(n)
        var out = ""
        for (k, c) in digits.enumerated() {
            if k > 0, (digits.count - k) % 3 == 0 { out += "," }
            out.append(c)
        }
        return out
    }
}
