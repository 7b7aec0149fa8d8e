import Foundation
import Glibc
import NIOCore
import RingstoreClient

/// Real `ringstore node` processes on loopback, started by a test and stopped by it.
///
/// The binary is `$RINGSTORE_BIN`, else `ringstore` beside the test bundle (SwiftPM
/// builds it into the same folder). Every node logs to `folder/ID.log`.
final class NodeProcesses: @unchecked Sendable {
    struct Node {
        let id: String
        let httpPort: Int
        let rpcPort: Int?
        let arguments: [String]
        let process: Process

        var endpoint: Endpoint { Endpoint(host: "127.0.0.1", port: httpPort) }
    }

    let folder: String
    private let lock = NSLock()
    private var nodes: [Node] = []

    private init(folder: String) {
        self.folder = folder
    }

    /// Starts a static cluster of `count` nodes (n1…nN) and waits until every node
    /// reaches every other.
    static func cluster(_ count: Int, extra: [String] = []) async throws -> NodeProcesses {
        let processes = NodeProcesses(folder: try temporaryFolder())
        do {
            // One call, so that no HTTP port is handed out again as an RPC port.
            let ports = try freePorts(2 * count)
            let httpPorts = Array(ports[..<count]), rpcPorts = Array(ports[count...])
            let ids = (1...count).map { "n\($0)" }
            let peers = zip(ids, rpcPorts).map { "\($0)=127.0.0.1:\($1)" }.joined(separator: ",")
            for (index, id) in ids.enumerated() {
                try processes.spawn(id: id, httpPort: httpPorts[index], rpcPort: rpcPorts[index], arguments: [
                    "--id", id, "--rpc", "127.0.0.1:\(rpcPorts[index])", "--peers", peers,
                    "--request-timeout-milliseconds", "1000", "--event-loop-threads", "1",
                ] + extra)
            }
            try await processes.waitUntilAllReachable(count: count)
        } catch {
            await processes.stopAll()
            throw error
        }
        return processes
    }

    /// Starts one node that is a cluster of its own (no node protocol).
    static func lone(extra: [String] = []) async throws -> NodeProcesses {
        let processes = NodeProcesses(folder: try temporaryFolder())
        do {
            let port = try freePorts(1)[0]
            try processes.spawn(id: "lone", httpPort: port, rpcPort: nil, arguments: extra)
            try await processes.waitUntilAllReachable(count: 1)
        } catch {
            await processes.stopAll()
            throw error
        }
        return processes
    }

    var all: [Node] { lock.withLock { nodes } }
    var endpoints: [Endpoint] { all.map(\.endpoint) }

    func node(_ id: String) -> Node {
        guard let node = all.first(where: { $0.id == id }) else { fatalError("no node \(id) in this test's cluster") }
        return node
    }

    /// Stops one node at once (SIGKILL) and waits for it to exit.
    func kill(_ id: String) {
        let process = node(id).process
        guard process.isRunning else { return }
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Starts a node that was killed again, on its data and ports, and waits until
    /// every node reaches every other.
    func restart(_ id: String) async throws {
        let stopped = node(id)
        precondition(!stopped.process.isRunning, "\(id) is still running")
        lock.withLock { nodes.removeAll { $0.id == id } }
        try spawn(id: id, httpPort: stopped.httpPort, rpcPort: stopped.rpcPort, arguments: stopped.arguments)
        try await waitUntilAllReachable(count: all.count)
    }

    /// Freezes one node (SIGSTOP): its connections stay open but nothing answers.
    func pause(_ id: String) {
        Glibc.kill(node(id).process.processIdentifier, SIGSTOP)
    }

    /// Thaws a node frozen by `pause`.
    func resume(_ id: String) {
        Glibc.kill(node(id).process.processIdentifier, SIGCONT)
    }

    /// SIGTERM to every node still running (thawed first), SIGKILL after 10 s; waits
    /// for each to exit.
    func stopAll() async {
        let running = all.filter { $0.process.isRunning }
        for node in running { Glibc.kill(node.process.processIdentifier, SIGCONT) }
        for node in running { node.process.terminate() }
        let deadline = ContinuousClock.now + .seconds(10)
        while running.contains(where: { $0.process.isRunning }) && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        for node in running where node.process.isRunning {
            Glibc.kill(node.process.processIdentifier, SIGKILL)
            node.process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: folder)
    }

    // MARK: Starting

    private func spawn(id: String, httpPort: Int, rpcPort: Int?, arguments: [String]) throws {
        let process = Process()
        process.executableURL = try Self.binary()
        process.arguments = ["node", "--data", "\(folder)/\(id)", "--http", "127.0.0.1:\(httpPort)", "--durability", "never", "--log-level", "warning"] + arguments
        let log = "\(folder)/\(id).log"
        if !FileManager.default.fileExists(atPath: log) { _ = FileManager.default.createFile(atPath: log, contents: nil) }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        lock.withLock { nodes.append(Node(id: id, httpPort: httpPort, rpcPort: rpcPort, arguments: arguments, process: process)) }
    }

    private func waitUntilAllReachable(count: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if await allReachable(count: count) { return }
            for node in all where !node.process.isRunning {
                throw TestFailure("\(node.id) exited with status \(node.process.terminationStatus); see \(folder)/\(node.id).log")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestFailure("the nodes did not see each other within 60 s; logs are in \(folder)")
    }

    private func allReachable(count: Int) async -> Bool {
        for node in all {
            let client = RingstoreHTTPClient(endpoints: [node.endpoint], timeout: .seconds(1))
            guard let reply = try? await client.send(method: "GET", path: "/v1/cluster"), reply.status == 200,
                  let json = try? JSONSerialization.jsonObject(with: Data(reply.body)) as? [String: Any],
                  let members = json["members"] as? [[String: Any]]
            else { return false }
            if members.count != count || members.contains(where: { ($0["reachable"] as? Bool) != true }) { return false }
        }
        return true
    }

    static func binary() throws -> URL {
        if let path = ProcessInfo.processInfo.environment["RINGSTORE_BIN"] {
            return URL(fileURLWithPath: path)
        }
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var folder = executable.deletingLastPathComponent()
        // On Linux the test runner is `<build>/debug/RingstorePackageTests.xctest`; on
        // macOS it is inside the bundle's Contents/MacOS.
        for _ in 0..<4 {
            let candidate = folder.appendingPathComponent("ringstore")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            folder = folder.deletingLastPathComponent()
        }
        throw TestFailure("no ringstore binary beside \(executable.path); build it (swift build) or set RINGSTORE_BIN")
    }

    private static func temporaryFolder() throws -> String {
        let path = NSTemporaryDirectory() + "ringstore-client-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Ports the kernel just handed out on loopback (peers must know --rpc up front).
    static func freePorts(_ count: Int) throws -> [Int] {
        var sockets: [Int32] = []
        defer { for socket in sockets { close(socket) } }
        var ports: [Int] = []
        for _ in 0..<count {
            let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard socket >= 0 else { throw TestFailure("socket() failed: errno \(errno)") }
            sockets.append(socket)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = 0
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { generic in
                    bind(socket, generic, length) == 0 && getsockname(socket, generic, &length) == 0
                }
            }
            guard bound else { throw TestFailure("bind() failed: errno \(errno)") }
            ports.append(Int(UInt16(bigEndian: address.sin_port)))
        }
        return ports
    }
}

/// Runs `body` with a cluster the test starts, and stops every process afterwards,
/// also when `body` throws.
func withCluster<T>(
    _ count: Int, extra: [String] = [], _ body: (NodeProcesses) async throws -> T
) async throws -> T {
    let processes = try await NodeProcesses.cluster(count, extra: extra)
    do {
        let result = try await body(processes)
        await processes.stopAll()
        return result
    } catch {
        await processes.stopAll()
        throw error
    }
}

/// Runs `body` with a cluster client of `processes`' HTTP endpoints, shut down afterwards.
func withClient<T>(
    _ endpoints: [Endpoint], configuration: ClusterClientConfiguration = ClusterClientConfiguration(),
    _ body: (RingstoreClusterClient) async throws -> T
) async throws -> T {
    let client = RingstoreClusterClient(endpoints: endpoints, configuration: configuration)
    do {
        let result = try await body(client)
        await client.shutdown()
        return result
    } catch {
        await client.shutdown()
        throw error
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
