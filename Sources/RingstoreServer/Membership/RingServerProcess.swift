import Foundation
import Hummingbird
public import Logging
import NIOCore
import NIOPosix
public import Prometheus
import RingstoreCore
import RingstoreRPC
import ServiceLifecycle
import UnixSignals

/// Where a ring server listens, besides its `RingServer.Options`.
public struct RingServerListeners: Sendable {
    public var httpHost: String
    public var httpPort: Int
    public var rpcHost: String
    public var rpcPort: Int
    public var maxValueBytes: Int
    /// The bearer token of `/v1/admin/…`; nil turns the admin API off.
    public var adminToken: String?
    /// A folder to serve the app's pages from instead of the built-in ones.
    public var webRoot: String?
    /// The `ringstore dev` supervisor's control address (`host:port`), for the dashboard's process buttons.
    public var devControl: String?

    public init(httpHost: String, httpPort: Int, rpcHost: String, rpcPort: Int, maxValueBytes: Int, adminToken: String? = nil) {
        self.adminToken = adminToken
        self.httpHost = httpHost
        self.httpPort = httpPort
        self.rpcHost = rpcHost
        self.rpcPort = rpcPort
        self.maxValueBytes = maxValueBytes
    }
}

/// `ringstore ring`: a ring server process.
public enum RingServerProcess {
    /// Runs a ring server until SIGTERM or SIGINT. `onListening` receives the bound HTTP and RPC ports.
    public static func run(
        _ options: RingServer.Options, listeners: RingServerListeners, registry: PrometheusCollectorRegistry?, logger: Logger,
        onListening: @escaping @Sendable (_ http: Int, _ rpc: Int) -> Void = { _, _ in }
    ) async throws {
        let server = try RingServer(options: options, group: MultiThreadedEventLoopGroup.singleton, logger: logger)
        let forward = Self.forwarder(server)
        let tables = RingServerTables(server: server, forward: forward)
        let primaryOnly = RingServerTables(server: server, forward: { _ in nil })
        let kv = RoutingKeyValueService(server: server)
        let rpcServer = RPCServer(
            host: listeners.rpcHost, port: listeners.rpcPort,
            handler: RingServerRPCHandler(server: server, tables: tables, primaryOnlyTables: primaryOnly, kv: kv),
            group: server.engineLoop, logger: logger)
        let rpcPort = try await rpcServer.start()
        server.start()
        let started = ContinuousClock.now
        let api = NodeHTTPAPI(
            catalog: tables, service: kv, linearizable: RoutingLinearizableService(server: server),
            cluster: RingServerView(server: server, rpcAddress: "\(listeners.rpcHost):\(rpcPort)"),
            maxValueBytes: listeners.maxValueBytes, registry: registry, logger: logger
        ) {
            let routing = server.routing
            let uptime = (ContinuousClock.now - started).components.seconds
            return "{\"status\":\"ok\",\"role\":\"ring\",\"ring_server\":\(JSONText.quote(options.id)),\"ring_role\":\"\(routing.role.label)\",\"term\":\(routing.term),\"formed\":\(routing.configuration.ring != nil),\"uptime_seconds\":\(uptime)}"
        }
        let window = RequestWindow()
        let appAPI = AppAPI(
            enrolment: EnrolmentAPI(tables: tables, kv: kv, linearizable: RoutingLinearizableService(server: server)),
            dashboard: DashboardAPI(server: server, window: window, devControl: listeners.devControl))
        let responder = RingServerResponder(
            api: api, admin: AdminAPI(server: server, token: listeners.adminToken), app: appAPI, web: WebFiles(webRoot: listeners.webRoot),
            window: window)
        let app = Application(
            responder: responder,
            server: .http1(fastPath: responder, logger: logger),
            configuration: ApplicationConfiguration(address: .hostname(listeners.httpHost, port: listeners.httpPort), serverName: nil),
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? listeners.httpPort, rpcPort) },
            logger: logger)
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [
                .init(service: RingServerService(server: server, rpcServer: rpcServer)),
                .init(service: app),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    /// Passes a table change to the other ring server; nil when it is not primary either or cannot be reached.
    static func forwarder(_ server: RingServer) -> @Sendable (TableChangeRequest) async throws -> TableDefinition? {
        let client = RPCClient(host: server.options.peer.host, port: server.options.peer.port, group: server.engineLoop, configuration: server.options.rpcClient)
        return { request in
            let body = try JSONEncoder().encode(request)
            do {
                let reply = try await client.call(RPCMessage(messageType: MembershipWire.forwardedTableChange, body: ByteBuffer(bytes: body)), timeout: .seconds(10))
                if request.action == "drop" { return TableDefinition(name: request.name, n: 0, r: 0, w: 0, consistency: .eventual) }
                return try JSONDecoder().decode(TableDefinition.self, from: Data(reply.body.readableBytesView))
            } catch let error as RPCError {
                if case .remote(let code, let message) = error, code == TableChangeErrors.apiErrorCode {
                    throw TableChangeErrors.decode(message)
                }
                return nil
            }
        }
    }
}

/// Carries API errors of table changes across RPC: the status, code and message as JSON.
enum TableChangeErrors {
    static let apiErrorCode: UInt16 = 40

    static func encode(_ error: APIError) -> RPCRemoteError {
        let body = "{\"status\":\(error.status.code),\"code\":\(JSONText.quote(error.code)),\"message\":\(JSONText.quote(error.message))}"
        return RPCRemoteError(code: apiErrorCode, message: body)
    }

    static func decode(_ text: String) -> APIError {
        struct Body: Decodable { var status: Int; var code: String; var message: String }
        guard let body = try? JSONDecoder().decode(Body.self, from: Data(text.utf8)) else {
            return APIError.internalError("a ring server answered a table change with: \(text)")
        }
        return APIError(HTTPResponse.Status(code: body.status), code: body.code, message: body.message)
    }
}

/// Answers the RPCs of nodes, of the other ring server, and of clients that send
/// their requests through a ring server over the node protocol.
struct RingServerRPCHandler: RPCHandler {
    let server: RingServer
    let tables: RingServerTables
    let primaryOnlyTables: RingServerTables
    let kv: RoutingKeyValueService

    func receive(_ request: RPCMessage, context: RPCRequestContext) -> RPCDispatch {
        switch request.messageType {
        case MembershipWire.tableChange, MembershipWire.forwardedTableChange: return .detach
        case PeerCodec.coordinateType: return kv.forwardClientRequest(request)
        default: return .later(server.receive(request))
        }
    }

    func handle(_ request: RPCMessage, context: RPCRequestContext) async throws -> RPCMessage {
        let change: TableChangeRequest
        do {
            change = try JSONDecoder().decode(TableChangeRequest.self, from: Data(request.body.readableBytesView))
        } catch {
            throw RPCRemoteError(code: 1, message: "undecodable table change: \(error)")
        }
        let directory = request.messageType == MembershipWire.forwardedTableChange ? primaryOnlyTables : tables
        do {
            switch change.action {
            case "create":
                let (definition, _) = try await directory.create(name: change.name, request: TableRequest(n: change.n, r: change.r, w: change.w, consistency: change.consistency))
                return RPCMessage(messageType: MembershipWire.tableChanged, body: ByteBuffer(bytes: try JSONEncoder().encode(definition)))
            case "drop":
                _ = try await directory.remove(name: change.name)
                return RPCMessage(messageType: MembershipWire.tableChanged, body: ByteBuffer())
            default:
                throw RPCRemoteError(code: 1, message: "unknown table change '\(change.action)'")
            }
        } catch let error as APIError {
            throw TableChangeErrors.encode(error)
        }
    }
}

/// Runs for the life of the process; on shutdown stops the RPC server and the ring server.
struct RingServerService: Service {
    let server: RingServer
    let rpcServer: RPCServer

    func run() async throws {
        try? await gracefulShutdown()
        await rpcServer.stop()
        await server.stop()
    }
}
