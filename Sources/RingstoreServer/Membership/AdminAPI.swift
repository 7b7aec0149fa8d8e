import Foundation
public import Hummingbird
public import HTTPTypes
public import NIOCore
import RingstoreCore
import RingstoreRPC

/// A ring server's HTTP surface: `/v1/admin/…` (bearer token), the enrolment app's
/// pages and API (`/`, `/dashboard`, `/assets/…`, `/app/v1/…`), and the client API.
///
/// The app's and the client API's answers allow any origin (CORS), so that a page
/// loaded from one ring server can fail over to the other.
public struct RingServerResponder: HTTPResponder {
    public typealias Context = BasicRequestContext

    let api: NodeHTTPAPI
    let admin: AdminAPI
    let app: AppAPI
    let web: WebFiles
    /// Timings of the requests answered, for the dashboard.
    let window: RequestWindow

    public func respond(to request: Request, context: Context) async throws -> Response {
        let path = request.uri.path
        let started = ContinuousClock.now
        defer { if !WebFiles.serves(path) { window.record(ContinuousClock.now - started) } }
        if path == "/v1/admin" || path.hasPrefix("/v1/admin/") {
            return await admin.respond(to: request)
        }
        if WebFiles.serves(path) {
            do { return try web.response(for: request) } catch { return NodeHTTPAPI.errorResponse(error) }
        }
        let crossOrigin = path.hasPrefix("/app/") || path.hasPrefix("/v1/")
        if crossOrigin && request.method == .options {
            var response = Response(status: .noContent)
            Self.allowCrossOrigin(&response.headers)
            response.headers[.accessControlAllowMethods] = "GET, HEAD, PUT, POST, DELETE, OPTIONS"
            response.headers[.accessControlAllowHeaders] = "Content-Type, If-Match, If-None-Match, X-Ringstore-Context"
            response.headers[.accessControlMaxAge] = "600"
            return response
        }
        var response: Response
        if path == "/app" || path.hasPrefix("/app/") {
            response = await app.respond(to: request)
        } else {
            response = try await api.respond(to: request, context: context)
        }
        if crossOrigin { Self.allowCrossOrigin(&response.headers) }
        return response
    }

    static func allowCrossOrigin(_ headers: inout HTTPFields) {
        headers[.accessControlAllowOrigin] = "*"
        headers[.accessControlExposeHeaders] = "ETag, Retry-After, X-Ringstore-Context, X-Ringstore-Kind"
    }
}

/// A ring server's fast path is its API's, with what the responder adds to every
/// `/v1/` answer: the cross-origin headers and the dashboard's timings.
extension RingServerResponder: HTTPFastPath {
    public var bodyBytesMax: Int { api.bodyBytesMax }

    public func accept(_ head: HTTPRequest) -> FastPathRequest? { api.accept(head) }

    public func serve(_ request: FastPathRequest, body: ByteBuffer, done: @escaping @Sendable (HTTPReply) -> Void) {
        api.serve(request, body: body) { [window] reply in
            var reply = reply
            Self.allowCrossOrigin(&reply.headers)
            window.record(ContinuousClock.now - request.started)
            done(reply)
        }
    }
}

/// Cluster administration (DESIGN §8, Dynamo §4.8): changes are staged as a plan, then
/// committed; partitions stream to their new holders and the ring switches once every
/// transfer is done.
///
/// | route | what |
/// | --- | --- |
/// | `GET /v1/admin/status` | role, members, the staged plan and the transition's progress |
/// | `GET /v1/admin/ring` | the ring, and the one being moved to |
/// | `GET /v1/admin/plan` | the staged plan |
/// | `POST /v1/admin/join/{node}` | stage a registered node's join |
/// | `POST /v1/admin/leave/{node}` | stage a member's departure (its partitions stream out first) |
/// | `POST /v1/admin/remove/{node}` | stage a dead member's removal (its replicas are rebuilt from the others) |
/// | `DELETE /v1/admin/plan` | drop the staged plan |
/// | `POST /v1/admin/commit` | commit the staged plan |
/// | `POST /v1/admin/repair` | a full anti-entropy round on every node, now; what it repaired |
struct AdminAPI: Sendable {
    let server: RingServer
    /// nil: the admin API is disabled (no token was configured).
    let token: String?

    func respond(to request: Request) async -> Response {
        do {
            try authorize(request)
            return try await dispatch(request)
        } catch let error as APIError {
            return NodeHTTPAPI.errorResponse(error)
        } catch {
            return NodeHTTPAPI.errorResponse(.internalError("The admin request failed: \(error)"))
        }
    }

    private func authorize(_ request: Request) throws(APIError) {
        guard let token else {
            throw APIError(.forbidden, code: "admin_disabled", message: "This ring server was started without --admin-token, so its admin API is off.")
        }
        var challenge = HTTPFields()
        challenge[.wwwAuthenticate] = "Bearer realm=\"ringstore-admin\""
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            throw APIError(.unauthorized, code: "unauthorized", message: "The admin API needs 'Authorization: Bearer <token>' (the ring servers' --admin-token).", headers: challenge)
        }
        guard Self.constantTimeEqual(Array(header.dropFirst("Bearer ".count).utf8), Array(token.utf8)) else {
            throw APIError(.unauthorized, code: "unauthorized", message: "The bearer token is not this cluster's admin token.", headers: challenge)
        }
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(a.count == b.count ? 0 : 1)
        for index in 0..<max(a.count, b.count) {
            difference |= (index < a.count ? a[index] : 0) ^ (index < b.count ? b[index] : 0)
        }
        return difference == 0
    }

    private func dispatch(_ request: Request) async throws -> Response {
        let segments = request.uri.path.split(separator: "/", omittingEmptySubsequences: false).dropFirst(3).map(String.init)
        let method = request.method
        switch (segments.first ?? "", segments.count) {
        case ("status", 1):
            try expect(method, [.get], request)
            return NodeHTTPAPI.jsonResponse(.ok, await statusJSON())
        case ("ring", 1):
            try expect(method, [.get], request)
            return NodeHTTPAPI.jsonResponse(.ok, ringJSON())
        case ("plan", 1):
            try expect(method, [.get, .delete], request)
            if method == .delete {
                let cancelled = await server.onEngine { $0.cancelPlan() }
                guard cancelled else { throw APIError(.notFound, code: "no_plan", message: "No plan is staged.") }
                return Response(status: .noContent)
            }
            guard let plan = await server.onEngine({ $0.plan }) else {
                throw APIError(.notFound, code: "no_plan", message: "No plan is staged; stage one with join, leave or remove.")
            }
            return NodeHTTPAPI.jsonResponse(.ok, Self.planJSON(plan, current: server.routing.configuration.ring))
        case ("join", 2), ("leave", 2), ("remove", 2):
            try expect(method, [.post], request)
            let node = NodeID(segments[1].removingPercentEncoding ?? segments[1])
            guard !node.rawValue.isEmpty else { throw APIError(.badRequest, code: "invalid_node", message: "Name the node: /v1/admin/\(segments[0])/{node}.") }
            let action = segments[0]
            let staged: Result<RingPlan, ChangeFailure> = await server.onEngine { engine in
                switch action {
                case "join": Result { () throws(ChangeFailure) in try engine.planJoin(node) }
                case "leave": Result { () throws(ChangeFailure) in try engine.planLeave(node) }
                default: Result { () throws(ChangeFailure) in try engine.planRemove(node) }
                }
            }
            switch staged {
            case .success(let plan): return NodeHTTPAPI.jsonResponse(.ok, Self.planJSON(plan, current: server.routing.configuration.ring))
            case .failure(let failure): throw RingServerTables.apiError(failure)
            }
        case ("repair", 1):
            try expect(method, [.post], request)
            return NodeHTTPAPI.jsonResponse(.ok, await repairJSON())
        case ("commit", 1):
            try expect(method, [.post], request)
            switch await server.change({ engine, token, now in engine.commitPlan(token: token, now: now) }) {
            case .success: return NodeHTTPAPI.jsonResponse(.accepted, await statusJSON())
            case .failure(let failure): throw RingServerTables.apiError(failure)
            }
        default:
            throw APIError.routeNotFound(request.uri.path)
        }
    }

    /// Asks every member for a full anti-entropy round now and sums what they did.
    private func repairJSON() async -> String {
        let members = server.routing.configuration.members.map(\.id)
        let results = await withTaskGroup(of: (NodeID, [String: Int]?, String).self) { group in
            for member in members {
                group.addTask {
                    guard let client = server.client(for: member) else { return (member, nil, "address unknown") }
                    do {
                        let reply = try await client.call(RPCMessage(messageType: AntiEntropyWire.repairNow, body: ByteBuffer()), timeout: .seconds(300))
                        let counts = (try? JSONSerialization.jsonObject(with: Data(reply.body.readableBytesView))) as? [String: Int]
                        return (member, counts, counts == nil ? "unreadable answer" : "")
                    } catch {
                        return (member, nil, "\(error)")
                    }
                }
            }
            var results: [(NodeID, [String: Int]?, String)] = []
            for await result in group { results.append(result) }
            return results.sorted { $0.0 < $1.0 }
        }
        var totals: [String: Int] = ["exchanges": 0, "differing": 0, "keys_repaired": 0, "failed": 0, "tombstones_purged": 0]
        var nodes: [String] = []
        for (member, counts, error) in results {
            if let counts {
                for (name, value) in counts { totals[name, default: 0] += value }
                let fields = counts.sorted { $0.key < $1.key }.map { "\(JSONText.quote($0.key)):\($0.value)" }.joined(separator: ",")
                nodes.append("\(JSONText.quote(member.rawValue)):{\(fields)}")
            } else {
                nodes.append("\(JSONText.quote(member.rawValue)):{\"error\":\(JSONText.quote(error))}")
            }
        }
        let sums = totals.sorted { $0.key < $1.key }.map { "\(JSONText.quote($0.key)):\($0.value)" }.joined(separator: ",")
        return "{\(sums),\"nodes\":{\(nodes.joined(separator: ","))}}"
    }

    private func expect(_ method: HTTPRequest.Method, _ allowed: [HTTPRequest.Method], _ request: Request) throws(APIError) {
        guard allowed.contains(method) else { throw APIError.methodNotAllowed(method, path: request.uri.path, allowed: allowed) }
    }

    // MARK: JSON

    private func statusJSON() async -> String {
        let routing = server.routing
        let configuration = routing.configuration
        let plan = await server.onEngine { $0.plan }
        let owned = Dictionary(grouping: configuration.ring?.owners ?? [], by: { $0 }).mapValues(\.count)
        let target = Dictionary(grouping: configuration.pendingRing?.owners ?? [], by: { $0 }).mapValues(\.count)
        let members = configuration.members.sorted { $0.id < $1.id }.map { member in
            "{\"id\":\(JSONText.quote(member.id.rawValue)),\"status\":\(JSONText.quote(member.status.label)),\"reachable\":\(routing.available.contains(member.id)),\"partitions\":\(owned[member.id] ?? 0),\"partitions_after\":\(configuration.pendingRing == nil ? "null" : "\(target[member.id] ?? 0)")}"
        }.joined(separator: ",")
        let pendingList = configuration.pendingTransfers().prefix(100).map { "{\"partition\":\($0.partition.rawValue),\"to\":\(JSONText.quote($0.to.rawValue))}" }.joined(separator: ",")
        let transition = configuration.transition.map { status in
            "{\"pending\":[\(pendingList)],\"transfers_required\":\(status.transfersRequired),\"transfers_done\":\(status.transfersDone),\"transfers_pending\":\(status.transfersPending),\"departing\":[\(status.departing.map { JSONText.quote($0.rawValue) }.joined(separator: ","))],\"target_ring_epoch\":\(status.targetRing.map { "\($0.epoch)" } ?? "null")}"
        } ?? "null"
        let planJSON = plan.map { Self.planJSON($0, current: configuration.ring) } ?? "null"
        return "{\"ring_server\":\(JSONText.quote(server.options.id)),\"role\":\(JSONText.quote(routing.role.label)),\"term\":\(routing.term),\"primary\":\(JSONText.quote(configuration.primary)),\"configuration\":{\"term\":\(configuration.term),\"epoch\":\(configuration.epoch)},\"ring_epoch\":\(configuration.ring?.epoch ?? 0),\"members\":[\(members)],\"plan\":\(planJSON),\"transition\":\(transition)}"
    }

    private func ringJSON() -> String {
        let configuration = server.routing.configuration
        func owners(_ ring: Ring?) -> String {
            guard let ring else { return "null" }
            return "[" + ring.owners.map { JSONText.quote($0.rawValue) }.joined(separator: ",") + "]"
        }
        return "{\"partitions\":\(server.partitioning.partitionCount),\"epoch\":\(configuration.ring?.epoch ?? 0),\"owners\":\(owners(configuration.ring)),\"pending_epoch\":\(configuration.pendingRing.map { "\($0.epoch)" } ?? "null"),\"pending_owners\":\(owners(configuration.pendingRing))}"
    }

    static func planJSON(_ plan: RingPlan, current: Ring?) -> String {
        let actions = plan.actions.map { action in
            switch action {
            case .join(let node): "{\"join\":\(JSONText.quote(node.rawValue))}"
            case .leave(let node): "{\"leave\":\(JSONText.quote(node.rawValue))}"
            case .remove(let node): "{\"remove\":\(JSONText.quote(node.rawValue))}"
            }
        }.joined(separator: ",")
        let moves = current.map { $0.transfers(to: plan.ring) } ?? []
        let moveItems = moves.map { "{\"partition\":\($0.0.rawValue),\"from\":\(JSONText.quote($0.from.rawValue)),\"to\":\(JSONText.quote($0.to.rawValue))}" }.joined(separator: ",")
        let counts = Dictionary(grouping: plan.ring.owners, by: { $0 }).mapValues(\.count)
        let balance = counts.keys.sorted().map { "\(JSONText.quote($0.rawValue)):\(counts[$0] ?? 0)" }.joined(separator: ",")
        return "{\"actions\":[\(actions)],\"ring_epoch\":\(plan.ring.epoch),\"ownership_moves\":[\(moveItems)],\"transfers\":\(plan.transfers.count),\"partitions_per_node\":{\(balance)}}"
    }
}

extension MemberStatus {
    var label: String {
        switch self {
        case .joining: "joining"
        case .member: "member"
        case .leaving: "leaving"
        case .removing: "removing"
        }
    }
}

extension RingServerRole {
    var label: String {
        switch self {
        case .primary: "primary"
        case .secondary: "secondary"
        case .candidate: "candidate"
        }
    }
}
