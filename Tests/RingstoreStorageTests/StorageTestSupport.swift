import Foundation
import Logging
import RingstoreCore
@testable import RingstoreStorage

/// A fresh folder under the system's temporary directory, removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init() {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("ringstore-test-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }

    func files(withSuffix suffix: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { $0.hasSuffix(suffix) }.sorted()
    }
}

let quietLogger = Logger(label: "ringstore.test") { _ in SwiftLogNoOpLogHandler() }

/// A logger that keeps every message, to check what recovery says it dropped.
final class CapturingLogHandler: LogHandler, @unchecked Sendable {
    final class Messages: @unchecked Sendable {
        private let lock = NSLock()
        private var items: [String] = []
        func append(_ message: String) { lock.withLock { items.append(message) } }
        var all: [String] { lock.withLock { items } }
    }

    let messages: Messages
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    init(messages: Messages) { self.messages = messages }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        messages.append("\(event.level) \(event.message) \(event.metadata ?? [:])")
    }
}

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

let p0 = PartitionID(rawValue: 0)
let p1 = PartitionID(rawValue: 1)
