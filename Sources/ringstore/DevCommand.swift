import ArgumentParser
import Dispatch
import Foundation
import Logging
import NIOCore
import RingstoreClient
import RingstoreServer

/// `ringstore dev`: a whole cluster on this machine, as child processes on loopback,
/// for trying Ringstore out. Ctrl-C stops every child.
struct DevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev",
        abstract: "Run a local cluster (2 ring servers and storage nodes, as child processes on loopback) until Ctrl-C."
    )

    @Option(help: "Storage nodes to start.")
    var nodes: Int = 5

    @Option(help: "Folder for every process's data and logs (kept between runs).")
    var data: String = "./ringstore-dev"

    @Option(help: "Port base: ring servers listen on base+80 and base+81 (RPC base+1080, base+1081); node i on base+100+i (RPC base+1100+i).")
    var basePort: Int = 8000

    @Option(help: "Durability of the nodes' writes: always, interval:MS or never.")
    var durability: String = "always"

    @Flag(help: "Do not load the enrolment app's catalogue and demo students.")
    var noSeed = false

    @Option(help: "Serve the enrolment app's pages from this folder instead of the built-in ones.")
    var webRoot: String?

    func validate() throws {
        guard (1...20).contains(nodes) else { throw ValidationError("--nodes must be 1 to 20.") }
        guard (1024...(65535 - 1200)).contains(basePort) else { throw ValidationError("--base-port must leave room for the ports above it.") }
    }

    func run() async throws {
        let folder = URL(fileURLWithPath: data).standardizedFileURL.path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let cluster = DevCluster(
            folder: folder, nodeCount: nodes, basePort: basePort, durability: durability,
            webRoot: webRoot.map { URL(fileURLWithPath: $0).standardizedFileURL.path })
        let stop = DevCluster.stopSignal()
        let control = Task {
            let server = DevControlServer(port: cluster.controlPort) { action, process in try await cluster.control(action, process) }
            try? await server.run(logger: Logger(label: "ringstore.dev") { _ in SwiftLogNoOpLogHandler() })
        }
        do {
            try cluster.start()
            try await cluster.waitUntilHealthy(timeout: .seconds(60))
            if !noSeed {
                let endpoints = (1...2).map { Endpoint(host: "127.0.0.1", port: cluster.ringHTTPPort($0)) }
                let seeded = try await Seeder(endpoints: endpoints).seed(students: 5000, subjects: Catalogue.subjects.count)
                say("seeded the enrolment app: \(seeded.subjects) subjects, \(seeded.students) students (s1000001 … s1005000)")
            }
        } catch {
            control.cancel()
            await cluster.stopAll()
            throw error
        }
        cluster.printSummary()
        await stop.wait()
        say("\nstopping…")
        control.cancel()
        await cluster.stopAll()
        say("stopped; data kept in \(folder)")
    }
}

/// The child processes of `ringstore dev` and how to reach them.
final class DevCluster: @unchecked Sendable {
    struct Child {
        let name: String
        let process: Process
        let httpPort: Int
        let arguments: [String]
    }

    let folder: String
    let nodeCount: Int
    let basePort: Int
    let durability: String
    let webRoot: String?
    private let lock = NSLock()
    private var children: [Child] = []
    /// The admin API's bearer token, kept in DATA/admin-token so it survives restarts.
    private(set) var adminToken = ""

    init(folder: String, nodeCount: Int, basePort: Int, durability: String, webRoot: String? = nil) {
        self.folder = folder
        self.nodeCount = nodeCount
        self.basePort = basePort
        self.durability = durability
        self.webRoot = webRoot
    }

    /// Where the dashboard's process buttons arrive (through the ring servers).
    var controlPort: Int { basePort + 79 }

    func nodeHTTPPort(_ index: Int) -> Int { basePort + 100 + index }
    func nodeRPCPort(_ index: Int) -> Int { basePort + 1100 + index }
    /// Ring server 1 is the first primary, ring server 2 the secondary.
    func ringHTTPPort(_ index: Int) -> Int { basePort + 79 + index }
    func ringRPCPort(_ index: Int) -> Int { basePort + 1079 + index }

    /// Starts both ring servers and every node; the nodes join through the ring servers.
    func start() throws {
        let tokenPath = "\(folder)/admin-token"
        if let saved = FileManager.default.contents(atPath: tokenPath), !saved.isEmpty {
            adminToken = String(decoding: saved, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        } else {
            var generator = SystemRandomNumberGenerator()
            adminToken = (0..<4).map { _ in String(generator.next(), radix: 16) }.joined()
            try Data(adminToken.utf8).write(to: URL(fileURLWithPath: tokenPath), options: .atomic)
            chmod(tokenPath, 0o600)
        }
        for index in 1...2 {
            let other = 3 - index
            try spawn(name: "rs\(index)", httpPort: ringHTTPPort(index), arguments: [
                "ring", "--id", "rs\(index)", "--role", index == 1 ? "primary" : "secondary",
                "--data", "\(folder)/rs\(index)", "--http", "127.0.0.1:\(ringHTTPPort(index))",
                "--rpc", "127.0.0.1:\(ringRPCPort(index))", "--peer", "rs\(other)=127.0.0.1:\(ringRPCPort(other))",
                "--initial-nodes", "\(nodeCount)", "--event-loop-threads", "1", "--admin-token", adminToken,
                "--dev-control", "127.0.0.1:\(controlPort)",
            ] + (webRoot.map { ["--web-root", $0] } ?? []))
        }
        let join = (1...2).map { "127.0.0.1:\(ringRPCPort($0))" }.joined(separator: ",")
        for index in 1...nodeCount {
            try spawn(name: "n\(index)", httpPort: nodeHTTPPort(index), arguments: [
                "node", "--id", "n\(index)", "--data", "\(folder)/n\(index)",
                "--http", "127.0.0.1:\(nodeHTTPPort(index))", "--rpc", "127.0.0.1:\(nodeRPCPort(index))",
                "--join", join, "--durability", durability, "--event-loop-threads", "1",
            ])
        }
    }

    private func spawn(name: String, httpPort: Int, arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
        process.arguments = arguments
        let log = "\(folder)/\(name).log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        lock.withLock {
            children.removeAll { $0.name == name }
            children.append(Child(name: name, process: process, httpPort: httpPort, arguments: arguments))
        }
    }

    /// The dashboard's process buttons: `stop` kills a process (SIGKILL, like a crash),
    /// `start` starts a stopped one again on its data, `kill-primary` kills whichever
    /// ring server is primary.
    func control(_ action: String, _ name: String?) async throws -> String {
        var target = name
        if action == "kill-primary" {
            let client = RingstoreHTTPClient(endpoints: (1...2).map { Endpoint(host: "127.0.0.1", port: ringHTTPPort($0)) }, timeout: .seconds(1))
            guard let reply = try? await client.send(method: "GET", path: "/v1/cluster"),
                  let json = try? JSONSerialization.jsonObject(with: Data(reply.body)) as? [String: Any],
                  let primary = json["primary"] as? String
            else { throw ValidationError("no ring server answered to say which one is primary") }
            target = primary
        }
        guard let target, let child = lock.withLock({ children.first { $0.name == target } }) else {
            throw ValidationError("there is no process named \(name ?? "?")")
        }
        switch action {
        case "stop", "kill-primary":
            guard child.process.isRunning else { return "\(target) is already stopped" }
            // A moment later, so that this answer gets back first when it travels through the process being killed.
            let pid = child.process.processIdentifier
            Task {
                try? await Task.sleep(for: .milliseconds(150))
                kill(pid, SIGKILL)
            }
            return "\(target) is being killed (SIGKILL)"
        default:
            guard !child.process.isRunning else { return "\(target) is already running" }
            try spawn(name: child.name, httpPort: child.httpPort, arguments: child.arguments)
            return "\(target) was started again on its data"
        }
    }

    /// Waits until every node answers and sees every other node as reachable.
    func waitUntilHealthy(timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await allReachable() { return }
            for child in lock.withLock({ children }) where !child.process.isRunning {
                throw ValidationError("\(child.name) exited with status \(child.process.terminationStatus); see \(folder)/\(child.name).log")
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw ValidationError("the cluster did not become healthy within \(timeout); logs are in \(folder)")
    }

    private func allReachable() async throws -> Bool {
        var roles: Set<String> = []
        for index in 1...2 {
            let client = RingstoreHTTPClient(endpoints: [Endpoint(host: "127.0.0.1", port: ringHTTPPort(index))], timeout: .seconds(1))
            guard let reply = try? await client.send(method: "GET", path: "/v1/cluster"), reply.status == 200,
                  let json = try? JSONSerialization.jsonObject(with: Data(reply.body)) as? [String: Any],
                  let members = json["members"] as? [[String: Any]], let role = json["role"] as? String,
                  (json["ring_epoch"] as? Int ?? 0) > 0
            else { return false }
            roles.insert(role)
            if members.count != nodeCount || members.contains(where: { ($0["reachable"] as? Bool) != true && index == 1 }) { return false }
        }
        guard roles == ["primary", "secondary"] else { return false }
        for index in 1...nodeCount {
            let client = RingstoreHTTPClient(endpoints: [Endpoint(host: "127.0.0.1", port: nodeHTTPPort(index))], timeout: .seconds(1))
            guard let reply = try? await client.send(method: "GET", path: "/v1/cluster"), reply.status == 200,
                  let json = try? JSONSerialization.jsonObject(with: Data(reply.body)) as? [String: Any],
                  let members = json["members"] as? [[String: Any]]
            else { return false }
            if members.count != nodeCount || members.contains(where: { ($0["reachable"] as? Bool) != true }) { return false }
        }
        return true
    }

    func printSummary() {
        say("Ringstore dev cluster is up: 2 ring servers and \(nodeCount) storage nodes, data and logs in \(folder)")
        for index in 1...2 {
            say("  ring server rs\(index)   http://127.0.0.1:\(ringHTTPPort(index))   (\(index == 1 ? "primary" : "secondary"); nodes join on 127.0.0.1:\(ringRPCPort(index)))")
        }
        for index in 1...nodeCount {
            say("  node n\(index)          http://127.0.0.1:\(nodeHTTPPort(index))   (peers on 127.0.0.1:\(nodeRPCPort(index)))")
        }
        let urls = (1...2).map { "http://127.0.0.1:\(ringHTTPPort($0))" }.joined(separator: ",")
        say("Try:  ringstore put --url \(urls) hello world")
        say("      curl -s http://127.0.0.1:\(ringHTTPPort(1))/v1/cluster")
        say("      ringstore admin status --token-file \(folder)/admin-token")
        say("Enrolment app:  http://127.0.0.1:\(ringHTTPPort(1))/   (sign in as s1000001)")
        say("Dashboard:      http://127.0.0.1:\(ringHTTPPort(1))/dashboard")
        say("Press Ctrl-C to stop.")
    }

    /// SIGTERM to every child, SIGKILL to those still running after 10 s.
    func stopAll() async {
        let running = lock.withLock { children }.filter { $0.process.isRunning }
        for child in running { child.process.terminate() }
        let deadline = ContinuousClock.now + .seconds(10)
        while running.contains(where: { $0.process.isRunning }) && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        for child in running where child.process.isRunning { kill(child.process.processIdentifier, SIGKILL) }
    }

    /// Completes on the first SIGINT or SIGTERM (the default handlers are replaced).
    static func stopSignal() -> StopSignal {
        let signal = StopSignal()
        for number in [SIGINT, SIGTERM] {
            Foundation.signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { signal.fire() }
            source.resume()
            signal.keep(source)
        }
        return signal
    }
}

/// A one-shot event that a signal handler fires and a task awaits.
final class StopSignal: @unchecked Sendable {
    private let lock = NSLock()
    private var fired = false
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private var sources: [any DispatchSourceSignal] = []

    func keep(_ source: any DispatchSourceSignal) { lock.withLock { sources.append(source) } }

    func fire() {
        let toResume = lock.withLock { () -> [CheckedContinuation<Void, Never>] in
            guard !fired else { return [] }
            fired = true
            defer { waiters.removeAll() }
            return waiters
        }
        for waiter in toResume { waiter.resume() }
    }

    func wait() async {
        await withCheckedContinuation { continuation in
            let now = lock.withLock { () -> Bool in
                if fired { return true }
                waiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }
}

/// Prints a line at once, also when standard output is a pipe or a file.
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
