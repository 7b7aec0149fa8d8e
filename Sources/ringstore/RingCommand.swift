import ArgumentParser
import Foundation
import Logging
import NIOCore
import RingstoreCore
import RingstoreServer
import RingstoreRPC
import RingstoreStorage

/// `ringstore ring`: a ring server, the cluster's membership authority and router.
struct RingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ring",
        abstract: "Run a ring server: membership authority and router (one primary, one secondary).",
        discussion: """
        Start two: one with --role primary, the other with --role secondary, each naming
        the other with --peer. Nodes join with `ringstore node --join RPC1,RPC2`. The ring
        forms once --initial-nodes nodes registered. A ring server whose state folder was
        lost must be restarted as secondary.
        """
    )

    @Option(help: "This ring server's id.")
    var id: String

    @Option(help: "primary or secondary: the role on first start (after that, the state file decides).")
    var role: String

    @Option(help: "Folder for the ring server's state; created if missing.")
    var data: String

    @Option(help: "Address to serve the HTTP API on, HOST:PORT.")
    var http: String = "127.0.0.1:8080"

    @Option(help: "Address for nodes and the other ring server, HOST:PORT.")
    var rpc: String = "127.0.0.1:9000"

    @Option(help: "The other ring server as ID=HOST:PORT (its --rpc address).")
    var peer: String

    @Option(help: "The cluster forms once this many nodes registered.")
    var initialNodes: Int = 3

    @Option(help: "Partitions of the ring (a power of two); fixed for the life of the cluster.")
    var partitions: Int = Limits.partitionCountDefault

    @Option(help: "Largest value accepted, in bytes.")
    var maxValueBytes: Int = Limits.valueBytesMaxDefault

    @Option(help: "Bearer token of the admin API (/v1/admin/…). Default: $RINGSTORE_ADMIN_TOKEN; without one the admin API is off.")
    var adminToken: String?

    @Option(help: "Serve the enrolment app's pages from this folder instead of the built-in ones (edits show without a rebuild).")
    var webRoot: String?

    @Option(help: ArgumentHelp("The `ringstore dev` supervisor's control address, HOST:PORT, for the dashboard's process buttons.", visibility: .hidden))
    var devControl: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(help: "Network event-loop threads (default: one per core).")
    var eventLoopThreads: Int?

    func peerAddress() throws -> (id: String, address: RingServerAddress) {
        let parts = peer.split(separator: "=", maxSplits: 1)
        guard parts.count == 2, !parts[0].isEmpty, let (host, port) = HostPort.parse(String(parts[1])), port > 0 else {
            throw ValidationError("--peer takes ID=HOST:PORT; '\(peer)' is not of that form.")
        }
        return (String(parts[0]), RingServerAddress(host: host, port: port))
    }

    func validate() throws {
        guard role == "primary" || role == "secondary" else { throw ValidationError("--role must be primary or secondary; got '\(role)'.") }
        guard !id.isEmpty, !id.contains(","), !id.contains("=") else { throw ValidationError("--id '\(id)' may not be empty or contain ',' or '='.") }
        guard HostPort.parse(http) != nil else { throw ValidationError("--http must be HOST:PORT; got '\(http)'.") }
        guard let rpcAddress = HostPort.parse(rpc), rpcAddress.port > 0 else { throw ValidationError("--rpc must be HOST:PORT with a fixed port; got '\(rpc)'.") }
        let (peerID, _) = try peerAddress()
        guard peerID != id else { throw ValidationError("--peer names this ring server's own id '\(id)'.") }
        guard (try? Partitioning(partitionCount: partitions)) != nil else {
            throw ValidationError("--partitions must be a power of two from 1 to \(Limits.partitionCountMax).")
        }
        guard (1...partitions).contains(initialNodes) else { throw ValidationError("--initial-nodes must be 1 to the partition count.") }
        guard (1...Limits.valueBytesMaxCeiling).contains(maxValueBytes) else {
            throw ValidationError("--max-value-bytes must be 1 to \(Limits.valueBytesMaxCeiling).")
        }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level '\(logLevel)' is not a log level.") }
        if let eventLoopThreads, !(1...256).contains(eventLoopThreads) { throw ValidationError("--event-loop-threads must be 1 to 256.") }
    }

    func run() async throws {
        if let eventLoopThreads { NIOSingletons.groupLoopCountSuggestion = eventLoopThreads }
        let logger = LogSetup.bootstrap(label: "ringstore.ring", level: Logger.Level(rawValue: logLevel)!)
        let (httpHost, httpPort) = HostPort.parse(http)!
        let (rpcHost, rpcPort) = HostPort.parse(rpc)!
        let (peerID, peerAddress) = try peerAddress()
        var options = RingServer.Options(
            id: id, peerID: peerID, initialRole: role == "primary" ? .primary : .secondary, peer: peerAddress,
            dataDirectory: data, initialNodeCount: initialNodes, partitionCount: partitions)
        options.rpcClient = .sending(from: rpcHost)
        let token = adminToken ?? ProcessInfo.processInfo.environment["RINGSTORE_ADMIN_TOKEN"]
        var listeners = RingServerListeners(
            httpHost: httpHost, httpPort: httpPort, rpcHost: rpcHost, rpcPort: rpcPort, maxValueBytes: maxValueBytes,
            adminToken: token.flatMap { $0.isEmpty ? nil : $0 })
        listeners.webRoot = webRoot
        listeners.devControl = devControl
        do {
            try await RingServerProcess.run(options, listeners: listeners, registry: ServerMetrics.bootstrapPrometheus(), logger: logger) { boundHTTP, boundRPC in
                FileHandle.standardOutput.write(Data("ringstore ring \(id) listening on http://\(httpHost):\(boundHTTP) rpc=\(rpcHost):\(boundRPC) data=\(data)\n".utf8))
            }
        } catch let error as StorageError {
            throw CleanExit.message("ringstore ring: \(error)")
        }
        logger.info("ring server stopped")
    }
}
