import Foundation
import ResNetModels

/// What a campaign's runs say about the orderings the paper reports, as sentences computed
/// from the runs (never typed in): the README's "what held" comes from here.
///
/// A verdict ("held", "did not hold") is given only when every run it compares has finished and
/// has a test error; before that a sentence says how many have. The criteria:
/// - degradation: for each family and seed, the deepest against the shallowest network. Held if
///   the deeper one's training error is on the paper's side (Fig. 6: higher for plain networks,
///   lower for ResNets) at the last evaluation point and at every point of the last quarter.
/// - depth: the mean test error over seeds falls at every step of depth (Table 6: 8.75 > 7.51 >
///   7.17 > 6.97); a step smaller than the largest difference between two seeds of one depth is
///   reported as not resolved by the seeds (a fall), or as no gain rather than a loss (a rise).
/// - shortcuts: whether options A, B and C differ within one seed by more than two seeds of one
///   option differ (Table 3 found them within 0.84 points on ImageNet). No bare "held": two
///   seeds can show a difference, not prove its absence.
public enum ExperimentFindings {
    /// One planned run of the campaign and, once it has finished, its test error.
    public struct Outcome: Sendable, Equatable {
        public var run: String
        public var network: String
        public var seed: UInt64
        public var shortcut: ShortcutOption
        public var finished: Bool
        /// The test error of the checkpoint chosen on validation, in percent (finished runs).
        public var testError: Double?
        public init(run: String, network: String, seed: UInt64, shortcut: ShortcutOption, finished: Bool, testError: Double?) {
            self.run = run
            self.network = network
            self.seed = seed
            self.shortcut = shortcut
            self.finished = finished
            self.testError = testError
        }

        /// Finished, with a finite test error.
        var result: Double? { finished ? testError.flatMap { $0.isFinite ? $0 : nil } : nil }
    }

    /// The sentences for `experiment`, from the evaluation points of its runs (`rows`) and every
    /// planned run (`runs`, finished or not); empty when there is nothing to compare.
    public static func sentences(_ experiment: Experiment, rows: [ExperimentReport.Row], runs: [Outcome]) -> [String] {
        switch experiment {
        case .degradation: return degradation(rows: rows, runs: runs)
        case .depth: return depth(runs)
        case .shortcuts: return shortcuts(runs)
        case .transfer: return []
        }
    }

    static func degradation(rows: [ExperimentReport.Row], runs: [Outcome]) -> [String] {
        var sentences: [String] = []
        let seeds = Set(runs.map(\.seed)).sorted()
        for (family, name, deeperHigher) in [("plain", "plain networks", true), ("resnet", "ResNets", false)] {
            for seed in seeds {
                let pair = runs.filter { $0.seed == seed && $0.network.hasPrefix(family) && depthOf($0.network) > 0 }
                    .sorted { depthOf($0.network) < depthOf($1.network) }
                guard let shallow = pair.first, let deep = pair.last, depthOf(deep.network) > depthOf(shallow.network) else { continue }
                let head = "\(deep.network) against \(shallow.network) (seed \(seed)\(seeds.count == 1 ? ", the only one" : ""))"
                guard shallow.finished, deep.finished else {
                    sentences.append("\(head): not compared until both have finished (\([shallow, deep].filter(\.finished).count) of 2 finished).")
                    continue
                }
                // The evaluation points both runs have, with finite errors (the same recipe
                // evaluates at the same iterations).
                func errors(_ run: String) -> [Int: Double] {
                    Dictionary(rows.filter { $0.run == run && $0.trainError.isFinite }.map { ($0.iteration, $0.trainError) }, uniquingKeysWith: { $1 })
                }
                let shallowErrors = errors(shallow.run), deepErrors = errors(deep.run)
                let points = deepErrors.keys.filter { shallowErrors[$0] != nil }.sorted()
                    .map { (iteration: $0, deep: deepErrors[$0]!, shallow: shallowErrors[$0]!) }
                guard let end = points.last else {
                    sentences.append("\(head): no evaluation point in common.")
                    continue
                }
                func side(_ p: (iteration: Int, deep: Double, shallow: Double)) -> Int { p.deep > p.shallow ? 1 : p.deep < p.shallow ? -1 : 0 }
                let expected = deeperHigher ? 1 : -1
                let word = [1: "higher", -1: "lower", 0: "equal"]
                let onPaperSide = points.filter { side($0) == expected }.count
                // The first iteration from which the side never changed again.
                var since = end.iteration
                for p in points.reversed() {
                    guard side(p) == side(end) else { break }
                    since = p.iteration
                }
                var sentence = "\(head): training error "
                if since == points[0].iteration, side(end) != 0 {
                    let margin = points.map { abs($0.deep - $0.shallow) }.min()!
                    sentence += String(format: "%@ at all %d evaluation points (by %.1f points or more)", word[side(end)]!, points.count, margin)
                } else {
                    sentence += "\(word[expected]!) at \(onPaperSide) of \(points.count) evaluation points"
                    if side(end) != 0 { sentence += ", \(word[side(end)]!) at every one from iteration \(grouped(since)) on" }
                }
                sentence += String(format: "; at the last (iteration %@) %.2f%% against %.2f%%", grouped(end.iteration), end.deep, end.shallow)
                if let a = deep.result, let b = shallow.result {
                    sentence += String(format: " (test error of the chosen checkpoints: %.2f%% against %.2f%%)", a, b)
                }
                let lastQuarter = points.suffix(max(1, points.count / 4))
                let held = lastQuarter.allSatisfy { side($0) == expected }
                sentence += ". The paper: deeper \(name) err \(deeperHigher ? "more" : "less") — \(held ? "held" : "did not hold")"
                sentence += held ? "." : " (not on the paper's side at every point of the last quarter of training)."
                sentences.append(sentence)
            }
        }
        return sentences
    }

    static func depth(_ runs: [Outcome]) -> [String] {
        let networks = Array(Set(runs.map(\.network))).sorted { depthOf($0) < depthOf($1) }
        guard networks.count >= 2 else { return [] }
        let means = networks.map { network in (network, mean(runs.filter { $0.network == network }.compactMap(\.result))) }
        let list = means.map { n, m in m.map { String(format: "%@ %.2f%%", n, $0) } ?? "\(n) —" }.joined(separator: ", ")
        let done = runs.filter { $0.result != nil }.count
        guard done == runs.count else {
            return ["Mean test error by depth so far (\(done) of \(runs.count) runs finished): \(list); no verdict until all have finished."]
        }
        let values = means.map { $0.1! }
        let steps = zip(values, values.dropFirst()).map { $1 - $0 }
        let labels = zip(networks, networks.dropFirst()).map { "\($0) to \($1)" }
        let seedGap = largestSeedGap(runs, by: \.network)
        let seeds = Set(runs.map(\.seed)).count
        var sentence = "Mean test error by depth over \(seeds == 1 ? "one seed" : "\(seeds) seeds"): \(list); steps "
            + zip(labels, steps).map { String(format: "%@ %+.2f", $0, $1) }.joined(separator: ", ") + " points"
        if let seedGap { sentence += String(format: "; two seeds of one depth differ by up to %.2f", seedGap) }
        let rises = zip(labels, steps).filter { $1 >= 0 }
        let unresolved = seedGap.map { gap in zip(labels, steps).filter { -$1 <= gap }.map(\.0) } ?? []
        if !rises.isEmpty {
            sentence += ". The paper's Table 6 falls at every step — did not hold (\(rises.map(\.0).joined(separator: ", ")))"
            // A rise smaller than two seeds' difference shows no gain from the step, not a loss.
            let small = seedGap.map { gap in rises.filter { $0.1 <= gap }.map(\.0) } ?? []
            if !small.isEmpty {
                sentence += small.count == 1
                    ? "; the rise \(small[0]) is within the seeds' spread: no gain from that step, not a resolved loss"
                    : "; the rises \(small.joined(separator: ", ")) are within the seeds' spread: no gain from those steps, not resolved losses"
            }
            sentence += "."
        } else if !unresolved.isEmpty {
            sentence += ". It fell at every step, as in the paper's Table 6 — held in the means, but \(unresolved.joined(separator: ", ")) "
                + "\(unresolved.count == 1 ? "is" : "are") within the seeds' spread, so not resolved by these runs."
        } else {
            sentence += ". It fell at every step, as in the paper's Table 6 — held\(seedGap == nil ? " (one seed each)" : ", each step larger than the seeds' spread")."
        }
        return [sentence]
    }

    static func shortcuts(_ runs: [Outcome]) -> [String] {
        var sentences: [String] = []
        for network in Set(runs.map(\.network)).sorted() {
            let planned = runs.filter { $0.network == network }
            let options = ShortcutOption.allCases.filter { o in planned.contains { $0.shortcut == o } }
            guard options.count >= 2 else { continue }
            let means = options.map { o in (o, mean(planned.filter { $0.shortcut == o }.compactMap(\.result))) }
            let list = means.map { o, m in m.map { String(format: "option %@ %.2f%%", o.rawValue, $0) } ?? "option \(o.rawValue) —" }.joined(separator: ", ")
            let done = planned.filter { $0.result != nil }.count
            guard done == planned.count else {
                sentences.append("\(network): mean test error so far (\(done) of \(planned.count) runs finished): \(list); no verdict until all have finished.")
                continue
            }
            // Like with like: options against each other within one seed, seeds against each
            // other within one option (single runs both).
            let withinSeed = Dictionary(grouping: planned, by: \.seed).values.map { g in
                let e = g.compactMap(\.result)
                return e.max()! - e.min()!
            }.max()!
            let order = means.sorted { $0.1! < $1.1! }.map { "\($0.0.rawValue)" }.joined(separator: " < ")
            var sentence = "\(network): mean test error \(list) (lowest first: \(order)); within one seed the options differ by up to "
                + String(format: "%.2f points", withinSeed)
            if let seedGap = largestSeedGap(planned, by: \.shortcut.rawValue) {
                sentence += String(format: ", two seeds of one option by up to %.2f: ", seedGap)
                sentence += withinSeed < seedGap ? "no difference between the options beyond seed noise"
                    : "the options differ by at least as much as the seeds do"
            } else {
                sentence += " (one seed: no measure of seed noise)"
            }
            sentences.append(sentence + ". The paper (Table 3, ResNet-34 on ImageNet): A, B and C within 0.84 points, C < B < A.")
        }
        return sentences
    }

    static func mean(_ values: [Double]) -> Double? { values.isEmpty ? nil : values.reduce(0, +) / Double(values.count) }

    /// The largest difference between two runs (seeds) of one key, or nil if no key has two.
    static func largestSeedGap(_ outcomes: [Outcome], by key: (Outcome) -> String) -> Double? {
        Dictionary(grouping: outcomes.filter { $0.result != nil }, by: key).values
            .filter { $0.count >= 2 }
            .map { runs in
                let errors = runs.compactMap(\.result)
                return errors.max()! - errors.min()!
            }
            .max()
    }
}
