import Foundation

/// A fixed set of threads for CPU work that should not run on the server's event loops or on
/// Swift's cooperative pool: decoding, resizing and preparing images. Work waits in a queue
/// whose length the batcher's admission already bounds.
final class DecodePool: @unchecked Sendable {
    private let condition = NSCondition()
    private var work: [@Sendable () -> Void] = []
    private var head = 0
    private var stopping = false
    private var threads: [Thread] = []

    init(threads count: Int) {
        for index in 0..<count {
            let thread = Thread { [self] in self.loop() }
            thread.name = "resnet-serve-decode-\(index)"
            thread.stackSize = 4 << 20
            threads.append(thread)
            thread.start()
        }
    }

    /// Runs `body` on one of the pool's threads and returns its result.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            enqueue { continuation.resume(with: Result(catching: body)) }
        }
    }

    /// Lets the threads finish the queued work and end.
    func stop() {
        condition.withLock {
            stopping = true
            condition.broadcast()
        }
    }

    private func enqueue(_ body: @escaping @Sendable () -> Void) {
        condition.withLock {
            work.append(body)
            condition.signal()
        }
    }

    private func loop() {
        while true {
            let next: (@Sendable () -> Void)? = condition.withLock {
                while head == work.count && !stopping { condition.wait() }
                guard head < work.count else { return nil }
                let body = work[head]
                head += 1
                // Drop what has run (and what its closure holds) without shifting on each take.
                if head == work.count {
                    work.removeAll(keepingCapacity: true)
                    head = 0
                } else if head >= 32 && 2 * head >= work.count {
                    work.removeFirst(head)
                    head = 0
                }
                return body
            }
            guard let next else { return }
            next()
        }
    }
}
