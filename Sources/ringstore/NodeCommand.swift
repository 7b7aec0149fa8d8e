import ArgumentParser
import Foundation
import Logging
import RingstoreCore
import RingstoreServer
import RingstoreStorage

/// `ringstore node`: a storage node. With no cluster options it is a cluster of one.
struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node",
        abstract: "Run a storage node (alone, it is a cluster of one: N=1, R=W=1)."
    )

    @Option(help: "Folder for this node's data; created if missing.")
    var data: String

    @Option(help: "Address to serve the HTTP API on, HOST:PORT (port 0 picks a free one).")
    var http: String = "127.0.0.1:8080"

    @Option(help: "Largest value accepted, in bytes.")
    var maxValueBytes: Int = Limits.valueBytesMaxDefault

    @Option(help: "When writes are durable: always (fsync, group commit), interval:MS, or never.")
    var durability: String = "always"

    @Option(help: "Partitions of the ring (a power of two); only used when the data folder is new.")
    var partitions: Int = Limits.partitionCountDefault

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func validate() throws {
        guard HostPort.parse(http) != nil else { throw ValidationError("--http must be HOST:PORT, for example 127.0.0.1:8080; got '\(http)'.") }
        guard Durability(parsing: durability) != nil else { throw ValidationError("--durability must be always, never or interval:MS; got '\(durability)'.") }
        guard (1...Limits.valueBytesMaxCeiling).contains(maxValueBytes) else {
            throw ValidationError("--max-value-bytes must be 1 to \(Limits.valueBytesMaxCeiling).")
        }
        guard (try? Partitioning(partitionCount: partitions)) != nil else {
            throw ValidationError("--partitions must be a power of two from 1 to \(Limits.partitionCountMax).")
        }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level '\(logLevel)' is not a log level.") }
    }

    func run() async throws {
        let logger = LogSetup.bootstrap(label: "ringstore.node", level: Logger.Level(rawValue: logLevel)!)
        let (host, port) = HostPort.parse(http)!
        let configuration = NodeConfiguration(
            dataDirectory: data, httpHost: host, httpPort: port, maxValueBytes: maxValueBytes,
            durability: Durability(parsing: durability)!, partitionCount: partitions)
        let registry = ServerMetrics.bootstrapPrometheus()
        do {
            try await NodeServer.run(configuration, registry: registry, logger: logger) { port in
                // One line on stdout that scripts and tests wait for.
                FileHandle.standardOutput.write(Data("ringstore node listening on http://\(host):\(port) data=\(data)\n".utf8))
            }
        } catch let error as StorageError {
            throw CleanExit.message("ringstore node: \(error)")
        }
        logger.info("node stopped")
    }
}

/// Address parsing shared by the commands.
enum HostPort {
    /// Splits `HOST:PORT` (or `:PORT`, meaning loopback).
    static func parse(_ text: String) -> (host: String, port: Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else { return nil }
        let host = String(text[..<colon])
        return (host.isEmpty ? "127.0.0.1" : host, port)
    }
}

enum LogSetup {
    /// Logs to standard error at `level`; returns the process's logger.
    static func bootstrap(label: String, level: Logger.Level) -> Logger {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: label)
        logger.logLevel = level
        return logger
    }
}
