import Foundation
import Hummingbird
import HTTPTypes
public import Logging
import NIOCore

/// The `ringstore dev` supervisor's control endpoint, which the ring servers pass
/// the dashboard's process buttons to: `POST /dev/nodes/{id}/stop|start`,
/// `POST /dev/ring-servers/primary/kill`, `POST /dev/ring-servers/{id}/start`.
/// It listens on loopback only.
public struct DevControlServer: Sendable {
    /// Carries out an action (`stop`, `start`, `kill-primary`) on a process (nil for
    /// the primary ring server) and returns what happened, or throws a sentence.
    public typealias Action = @Sendable (_ action: String, _ process: String?) async throws -> String

    let port: Int
    let action: Action

    public init(port: Int, action: @escaping Action) {
        self.port = port
        self.action = action
    }

    struct Responder: HTTPResponder {
        typealias Context = BasicRequestContext
        let action: Action

        func respond(to request: Request, context: Context) async throws -> Response {
            let segments = request.uri.path.split(separator: "/").map(String.init)
            guard request.method == .post, segments.count == 4, segments[0] == "dev" else {
                return NodeHTTPAPI.errorResponse(.routeNotFound(request.uri.path))
            }
            let verb: String
            let process: String?
            switch (segments[1], segments[2], segments[3]) {
            case ("nodes", let id, "stop"), ("ring-servers", let id, "stop"): (verb, process) = ("stop", id)
            case ("nodes", let id, "start"), ("ring-servers", let id, "start"): (verb, process) = ("start", id)
            case ("ring-servers", "primary", "kill"): (verb, process) = ("kill-primary", nil)
            default: return NodeHTTPAPI.errorResponse(.routeNotFound(request.uri.path))
            }
            do {
                let message = try await action(verb, process)
                return NodeHTTPAPI.jsonResponse(.accepted, "{\"ok\":true,\"message\":\(JSONText.quote(message))}")
            } catch {
                return NodeHTTPAPI.errorResponse(APIError(.conflict, code: "dev_action_failed", message: "\(error)"))
            }
        }
    }

    /// Serves until the task is cancelled.
    public func run(logger: Logger) async throws {
        let app = Application(
            responder: Responder(action: action),
            configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: port), serverName: nil),
            logger: logger)
        try await app.runService(gracefulShutdownSignals: [])
    }
}
