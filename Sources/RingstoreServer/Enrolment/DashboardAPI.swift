import Foundation
import Hummingbird
import HTTPTypes
import NIOCore
import NIOPosix
import RingstoreCore
import RingstoreRPC
import Synchronization

/// Message types a ring server uses to read a node's figures for the dashboard.
enum NodeStatsWire {
    /// Body empty; reply (`reply`) JSON `{"keys":…,"hints":…,"operations":…}`.
    static let request: UInt16 = 62
    static let reply: UInt16 = 162
}

/// Requests a ring server answered, per second, for the dashboard's throughput and
/// p99: the last 60 seconds.
final class RequestWindow: Sendable {
    private struct Second {
        var start: Int
        var count = 0
        var latencies: [Double] = []
    }

    private let seconds = Mutex<[Second]>([])
    private static let samplesPerSecondMax = 2000

    func record(_ duration: Duration) {
        let now = Int(Date().timeIntervalSince1970)
        let milliseconds = Double(duration.components.attoseconds) / 1e15 + Double(duration.components.seconds) * 1000
        seconds.withLock { seconds in
            if seconds.last?.start != now {
                seconds.append(Second(start: now))
                if seconds.count > 61 { seconds.removeFirst(seconds.count - 61) }
            }
            seconds[seconds.count - 1].count += 1
            if seconds[seconds.count - 1].latencies.count < Self.samplesPerSecondMax {
                seconds[seconds.count - 1].latencies.append(milliseconds)
            }
        }
    }

    /// Complete seconds, oldest first: (unix time, requests, p99 in ms).
    func history() -> [(Int, Int, Double)] {
        let now = Int(Date().timeIntervalSince1970)
        return seconds.withLock { $0 }.filter { $0.start < now }.map { second in
            let sorted = second.latencies.sorted()
            let p99 = sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.99))]
            return (second.start, second.count, p99)
        }
    }
}

/// `/app/v1/dashboard…` and `/app/v1/dev/…` on a ring server.
final class DashboardAPI: Sendable {
    let server: RingServer
    let window: RequestWindow
    /// The `ringstore dev` supervisor's control address (`host:port`); nil outside it.
    let devControl: String?
    private let previous = Mutex<[NodeID: (operations: Double, at: ContinuousClock.Instant, rate: Double)]>([:])

    init(server: RingServer, window: RequestWindow, devControl: String?) {
        self.server = server
        self.window = window
        self.devControl = devControl
    }

    func respond(to request: Request, segments: [String]) async throws -> Response {
        switch (segments.first ?? "", segments.count) {
        case ("dashboard", 1):
            guard request.method == .get else { throw APIError.methodNotAllowed(request.method, path: request.uri.path, allowed: [.get]) }
            return NodeHTTPAPI.jsonResponse(.ok, await dashboardJSON())
        case ("dashboard", _) where segments.count >= 4 && segments[1] == "locate":
            guard request.method == .get else { throw APIError.methodNotAllowed(request.method, path: request.uri.path, allowed: [.get]) }
            let table = try NodeHTTPAPI.decodeTableName(segments[2])
            let key = try NodeHTTPAPI.decodeKey(segments.dropFirst(3).joined(separator: "/"))
            return NodeHTTPAPI.jsonResponse(.ok, try await locateJSON(table: table, key: key))
        case ("dev", _):
            guard request.method == .post else { throw APIError.methodNotAllowed(request.method, path: request.uri.path, allowed: [.post]) }
            guard let devControl else {
                throw APIError(.notFound, code: "dev_controls_off", message: "Process controls exist only under `ringstore dev`.")
            }
            let (status, body) = try await DevControlClient.post(to: devControl, path: "/" + segments.joined(separator: "/"))
            return NodeHTTPAPI.jsonResponse(HTTPResponse.Status(code: status), body)
        default:
            throw APIError.routeNotFound(request.uri.path)
        }
    }

    // MARK: Overview

    private func dashboardJSON() async -> String {
        let routing = server.routing
        let configuration = routing.configuration
        var partitions: [NodeID: Int] = [:]
        for owner in configuration.ring?.owners ?? [] { partitions[owner, default: 0] += 1 }
        let stats = await recentNodeStats(configuration.members.map(\.id))
        var nodes: [String] = []
        for member in configuration.members.sorted(by: { $0.id < $1.id }) {
            let figures = stats[member.id]
            let perSecond: Double = figures.map { self.rate(of: member.id, operations: $0.operations) } ?? 0
            let reachable = routing.available.contains(member.id)
            let address = "\(member.httpHost):\(member.httpPort)"
            var node = "{\"id\":\(JSONText.quote(member.id.rawValue)),\"status\":\"\(member.status.label)\",\"reachable\":\(reachable),"
            node += "\"partitions\":\(partitions[member.id] ?? 0),\"keys\":\(figures?.keys ?? 0),\"hints\":\(figures?.hints ?? 0),"
            node += "\"requests_per_second\":\(Self.number(perSecond)),\"http\":\(JSONText.quote(address))}"
            nodes.append(node)
        }
        let history = window.history()
        let lastCount = history.last?.1 ?? 0
        let lastP99 = history.last?.2 ?? 0
        let points = history.map { "{\"t\":\($0.0),\"requests_per_second\":\($0.1),\"p99_ms\":\(Self.number($0.2))}" }
        var json = "{\"ring_server\":\(JSONText.quote(server.options.id)),\"role\":\"\(routing.role.label)\",\"term\":\(routing.term),"
        json += "\"primary\":\(JSONText.quote(configuration.primary)),\"ring_epoch\":\(configuration.ring?.epoch ?? 0),\"dev\":\(devControl != nil),"
        json += "\"nodes\":[\(nodes.joined(separator: ","))],"
        json += "\"throughput\":{\"requests_per_second\":\(lastCount),\"p99_ms\":\(Self.number(lastP99))},"
        json += "\"history\":[\(points.joined(separator: ","))]}"
        return json
    }

    private static func number(_ value: Double) -> String { String(format: "%.2f", value) }

    /// Operations per second since the previous look (kept per node).
    private func rate(of node: NodeID, operations: Double) -> Double {
        let now = ContinuousClock.now
        return previous.withLock { previous in
            defer { if previous[node].map({ now - $0.at >= .milliseconds(900) }) ?? true { previous[node] = (operations, now, previous[node]?.rate ?? 0) } }
            guard let last = previous[node] else { return 0 }
            let elapsed = (now - last.at) / .seconds(1)
            guard elapsed >= 0.9 else { return last.rate }
            let rate = max(0, operations - last.operations) / elapsed
            previous[node] = (operations, now, rate)
            return rate
        }
    }

    private struct NodeFigures: Decodable {
        var keys: Int
        var hints: Int
        var operations: Double
    }

    /// The nodes' figures, asked of them at most every `statsMaxAge`: every dashboard
    /// open on this ring server polls it each second, and they share one round of asks.
    private func recentNodeStats(_ members: [NodeID]) async -> [NodeID: NodeFigures] {
        let now = ContinuousClock.now
        if let cached = statsCache.withLock({ $0 }), cached.members == members, now - cached.at < Self.statsMaxAge {
            return cached.stats
        }
        let stats = await nodeStats(members)
        statsCache.withLock { $0 = (now, members, stats) }
        return stats
    }

    private static let statsMaxAge = Duration.milliseconds(500)
    private let statsCache = Mutex<(at: ContinuousClock.Instant, members: [NodeID], stats: [NodeID: NodeFigures])?>(nil)

    private func nodeStats(_ members: [NodeID]) async -> [NodeID: NodeFigures] {
        await withTaskGroup(of: (NodeID, NodeFigures?).self) { group in
            for member in members {
                group.addTask {
                    guard let client = self.server.client(for: member),
                          let reply = try? await client.call(RPCMessage(messageType: NodeStatsWire.request, body: ByteBuffer()), timeout: .milliseconds(500))
                    else { return (member, nil) }
                    return (member, try? JSONDecoder().decode(NodeFigures.self, from: Data(reply.body.readableBytesView)))
                }
            }
            var stats: [NodeID: NodeFigures] = [:]
            for await (member, figures) in group { stats[member] = figures }
            return stats
        }
    }

    // MARK: A key's replicas

    private func locateJSON(table name: String, key: [UInt8]) async throws -> String {
        let routing = server.routing
        guard let spec = routing.configuration.table(named: name) else { throw APIError.tableNotFound(name) }
        let partition = routing.partitioning.partition(table: name, key: key)
        let item = ItemKey(table: name, key: key, partition: partition)
        let preference = routing.configuration.ring?.preferenceList(for: partition, count: spec.n) ?? []
        let (type, body) = PeerCodec.encode(PeerRequest.replicaRead(item))
        let replicas = await withTaskGroup(of: (Int, String).self) { group in
            for (index, node) in preference.enumerated() {
                group.addTask {
                    let reachable = routing.available.contains(node)
                    var fields = "\"node\":\(JSONText.quote(node.rawValue)),\"reachable\":\(reachable)"
                    guard spec.consistency == TableSpec.eventual else {
                        return (index, "{\(fields),\(await self.acceptorFields(item, n: spec.n, at: node))}")
                    }
                    guard let client = self.server.client(for: node),
                          let reply = try? await client.call(RPCMessage(messageType: type, body: ByteBuffer(bytes: body)), timeout: .milliseconds(800)),
                          case .replicaRead(let object)? = try? PeerCodec.decodeReply(type: reply.messageType, body: Array(reply.body.readableBytesView))
                    else {
                        return (index, "{\(fields),\"found\":null,\"version\":\"no answer\"}")
                    }
                    if let object {
                        let deleted = object.values.allSatisfy(\.isTombstone)
                        fields += ",\"found\":true,\"siblings\":\(object.siblingCount),\"deleted\":\(deleted),\"version\":\(JSONText.quote(Self.describe(object.context)))"
                    } else {
                        fields += ",\"found\":false,\"siblings\":0,\"deleted\":false,\"version\":\"\""
                    }
                    return (index, "{\(fields)}")
                }
            }
            var results: [(Int, String)] = []
            for await result in group { results.append(result) }
            return results.sorted { $0.0 < $1.0 }.map(\.1)
        }
        return "{\"table\":\(JSONText.quote(name)),\"key\":\(JSONText.quote(String(decoding: key, as: UTF8.self))),\"partition\":\(partition.rawValue),"
            + "\"preference_list\":[\(preference.map { JSONText.quote($0.rawValue) }.joined(separator: ","))],\"replicas\":[\(replicas.joined(separator: ","))]}"
    }

    /// What one replica's acceptor last accepted for a linearizable key, as the
    /// dashboard shows it: the value's version (its ETag) and the ballot.
    private func acceptorFields(_ item: ItemKey, n: Int, at node: NodeID) async -> String {
        let epoch = server.routing.configuration.ring?.epoch ?? 0
        let request = RPCMessage(
            messageType: CASPaxosPeek.requestType,
            body: ByteBuffer(bytes: CASPaxosPeek.encodeRequest(item, placement: CASPaxosPlacement(ringEpoch: epoch, replicaCount: n))))
        guard let client = server.client(for: node),
              let reply = try? await client.call(request, timeout: .milliseconds(800)), reply.messageType == CASPaxosPeek.replyType,
              let (_, accepted) = try? CASPaxosPeek.decodeReply(Array(reply.body.readableBytesView))
        else { return "\"found\":null,\"siblings\":0,\"deleted\":false,\"version\":\"no answer\"" }
        guard let accepted, let value = accepted.value else {
            return "\"found\":false,\"siblings\":0,\"deleted\":false,\"version\":\"\""
        }
        return "\"found\":true,\"siblings\":1,\"deleted\":\(!value.exists),\"version\":\(JSONText.quote("ETag \"\(value.version)\", ballot \(accepted.ballot)"))"
    }

    /// A version vector as `actor:counter` pairs, actors shortened to 6 hex digits.
    static func describe(_ context: VersionVector) -> String {
        context.entries.map { "\(String(String($0.actor.rawValue, radix: 16).prefix(6))):\($0.counter)" }.joined(separator: " ")
    }
}

/// Sends a body-less POST to the `ringstore dev` supervisor and returns its status and body.
enum DevControlClient {
    static func post(to address: String, path: String) async throws -> (Int, String) {
        let parts = address.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]) else { throw APIError.internalError("bad dev control address \(address)") }
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(2))
            .connect(host: String(parts[0]), port: port) { channel in
                channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
            }
        let request = "POST \(path) HTTP/1.1\r\nHost: \(address)\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        var received = ByteBuffer()
        try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: request))
            for try await var chunk in inbound { received.writeBuffer(&chunk) }
        }
        let text = String(buffer: received)
        let status = text.split(separator: " ", maxSplits: 2).dropFirst().first.flatMap { Int($0) } ?? 502
        let body = text.range(of: "\r\n\r\n").map { String(text[$0.upperBound...]) } ?? ""
        return (status, body.isEmpty ? "{}" : body)
    }
}
