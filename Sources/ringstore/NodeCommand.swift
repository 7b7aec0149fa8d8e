import ArgumentParser
import Foundation
import Logging
import NIOCore
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

    @Option(help: "Megabytes of recently written and read values to keep in memory (0 keeps none).")
    var cacheMB: Int = Limits.valueCacheBytesDefault >> 20

    @Option(help: "Partitions of the ring (a power of two); only used when the data folder is new.")
    var partitions: Int = Limits.partitionCountDefault

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(help: "This node's id in a cluster (with --rpc and --peers).")
    var id: String?

    @Option(help: "Address for the node-to-node protocol, HOST:PORT (with --id).")
    var rpc: String?

    @Option(help: "The cluster's members as ID=HOST:PORT,… (their --rpc addresses; this node may be listed).")
    var peers: String?

    @Option(help: "Join a cluster through its ring servers: their --rpc addresses, HOST:PORT,HOST:PORT (with --id and --rpc, instead of --peers).")
    var join: String?

    @Option(help: "Milliseconds a coordinator waits for its quorum.")
    var requestTimeoutMilliseconds: Int = 2000

    @Option(help: "Milliseconds between two anti-entropy exchanges in the background; 0 turns the background rounds off (`ringstore admin repair` still runs one).")
    var antiEntropyPauseMilliseconds: Int = 100

    @Option(help: "Seconds a deleted key must have held only tombstones before anti-entropy purges it, which it does only once every replica holds the same tombstone and no node keeps a hint for the key; -1 keeps tombstones for ever.")
    var tombstoneGraceSeconds: Int = 300

    @Option(help: "Network event-loop threads (default: one per core). Fewer suit several nodes sharing one machine.")
    var eventLoopThreads: Int?

    /// The static members given with --peers.
    func peerAddresses() throws -> [PeerAddress] {
        guard let peers else { return [] }
        return try peers.split(separator: ",").map { item in
            let parts = item.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, !parts[0].isEmpty, let (host, port) = HostPort.parse(String(parts[1])), port > 0 else {
                throw ValidationError("--peers takes ID=HOST:PORT,…; '\(item)' is not of that form.")
            }
            return PeerAddress(id: NodeID(String(parts[0])), host: host, port: port)
        }
    }

    /// The ring servers given with --join.
    func ringServerAddresses() throws -> [RingServerAddress] {
        guard let join else { return [] }
        let addresses = try join.split(separator: ",").map { item in
            guard let (host, port) = HostPort.parse(String(item)), port > 0 else {
                throw ValidationError("--join takes the ring servers' --rpc addresses as HOST:PORT,HOST:PORT; '\(item)' is not of that form.")
            }
            return RingServerAddress(host: host, port: port)
        }
        guard (1...2).contains(addresses.count) else { throw ValidationError("--join takes one or two ring server addresses.") }
        return addresses
    }

    func validate() throws {
        guard HostPort.parse(http) != nil else { throw ValidationError("--http must be HOST:PORT, for example 127.0.0.1:8080; got '\(http)'.") }
        guard Durability(parsing: durability) != nil else { throw ValidationError("--durability must be always, never or interval:MS; got '\(durability)'.") }
        guard (1...Limits.valueBytesMaxCeiling).contains(maxValueBytes) else {
            throw ValidationError("--max-value-bytes must be 1 to \(Limits.valueBytesMaxCeiling).")
        }
        guard (0...Limits.valueCacheMegabytesMax).contains(cacheMB) else {
            throw ValidationError("--cache-mb must be 0 to \(Limits.valueCacheMegabytesMax).")
        }
        guard (try? Partitioning(partitionCount: partitions)) != nil else {
            throw ValidationError("--partitions must be a power of two from 1 to \(Limits.partitionCountMax).")
        }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level '\(logLevel)' is not a log level.") }
        guard peers == nil || join == nil else {
            throw ValidationError("--peers (a static cluster) and --join (ring servers) exclude each other.")
        }
        let clusterOptions = [id, rpc, peers ?? join].compactMap { $0 }.count
        guard clusterOptions == 0 || clusterOptions == 3 else {
            throw ValidationError("A cluster member needs --id, --rpc and --peers (or --join) together; without them the node runs alone.")
        }
        if join != nil, let rpc, HostPort.parse(rpc)?.port == 0 {
            throw ValidationError("A node that joins ring servers needs a fixed --rpc port; they reach it there.")
        }
        if join != nil, HostPort.parse(http)?.port == 0 {
            throw ValidationError("A node that joins ring servers needs a fixed --http port; clients are pointed to it.")
        }
        _ = try ringServerAddresses()
        if let rpc, HostPort.parse(rpc) == nil { throw ValidationError("--rpc must be HOST:PORT; got '\(rpc)'.") }
        if let id, id.isEmpty || id.contains(",") || id.contains("=") { throw ValidationError("--id '\(id)' may not be empty or contain ',' or '='.") }
        _ = try peerAddresses()
        if let eventLoopThreads, !(1...256).contains(eventLoopThreads) { throw ValidationError("--event-loop-threads must be 1 to 256.") }
        guard requestTimeoutMilliseconds > 0 else { throw ValidationError("--request-timeout-milliseconds must be positive.") }
        guard antiEntropyPauseMilliseconds >= 0 else { throw ValidationError("--anti-entropy-pause-milliseconds must be 0 or more.") }
        guard tombstoneGraceSeconds >= -1 else { throw ValidationError("--tombstone-grace-seconds must be 0 or more, or -1 to keep tombstones.") }
    }

    func run() async throws {
        let memory = ProcessMemory.manage()
        defer { memory.cancel() }
        if let eventLoopThreads { NIOSingletons.groupLoopCountSuggestion = eventLoopThreads }
        let logger = LogSetup.bootstrap(label: "ringstore.node", level: Logger.Level(rawValue: logLevel)!)
        let (host, port) = HostPort.parse(http)!
        let rpcAddress = rpc.flatMap(HostPort.parse)
        var configuration = NodeConfiguration(
            dataDirectory: data, httpHost: host, httpPort: port, maxValueBytes: maxValueBytes,
            durability: Durability(parsing: durability)!, partitionCount: partitions, nodeID: id,
            rpcHost: rpcAddress?.host ?? "127.0.0.1", rpcPort: rpcAddress?.port ?? 0, peers: try peerAddresses(),
            requestTimeout: .milliseconds(requestTimeoutMilliseconds))
        configuration.ringServers = try ringServerAddresses()
        configuration.antiEntropyPause = antiEntropyPauseMilliseconds == 0 ? nil : .milliseconds(antiEntropyPauseMilliseconds)
        configuration.tombstoneGrace = tombstoneGraceSeconds == -1 ? nil : .seconds(tombstoneGraceSeconds)
        configuration.cacheBytes = cacheMB << 20
        let registry = ServerMetrics.bootstrapPrometheus()
        do {
            try await NodeServer.run(configuration, registry: registry, logger: logger) { httpPort, rpcPort in
                // One line on stdout that scripts and tests wait for.
                var lines = "ringstore node listening on http://\(host):\(httpPort) data=\(data)\n"
                if let rpcPort { lines += "ringstore node \(id ?? "") serving peers on \(rpcAddress?.host ?? host):\(rpcPort)\n" }
                FileHandle.standardOutput.write(Data(lines.utf8))
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
            var handler = LazyMetadataLogHandler(StreamLogHandler.standardError(label: label))
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: label)
        logger.logLevel = level
        return logger
    }
}

/// `StreamLogHandler`'s output, with metadata rendered only when a line is written.
///
/// `StreamLogHandler` renders its metadata into text whenever metadata is set, and
/// the HTTP server sets a request id on every request's logger: 3–5% of a node's
/// CPU under load went to rendering text that no line at the configured level used.
struct LazyMetadataLogHandler: LogHandler {
    private var stream: StreamLogHandler
    var metadata: Logger.Metadata = [:]

    init(_ stream: StreamLogHandler) {
        self.stream = stream
    }

    var logLevel: Logger.Level {
        get { stream.logLevel }
        set { stream.logLevel = newValue }
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { stream.metadataProvider }
        set { stream.metadataProvider = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var stream = self.stream
        stream.metadata = metadata
        stream.log(event: event)
    }
}
