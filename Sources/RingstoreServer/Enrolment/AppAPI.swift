import Foundation
import Hummingbird
import HTTPTypes
import NIOCore
import RingstoreCore

/// `/app/v1/…` on a ring server: the enrolment API, the dashboard's data, and under
/// `ringstore dev` the controls that stop and start processes.
struct AppAPI: Sendable {
    let enrolment: EnrolmentAPI
    let dashboard: DashboardAPI

    func respond(to request: Request) async -> Response {
        let segments = request.uri.path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
        do {
            guard segments.count >= 3, segments[0] == "app", segments[1] == "v1" else { throw APIError.routeNotFound(request.uri.path) }
            switch segments[2] {
            case "dashboard", "dev":
                return try await dashboard.respond(to: request, segments: Array(segments.dropFirst(2)))
            default:
                return try await enrolment.respond(to: request)
            }
        } catch let error as APIError {
            return NodeHTTPAPI.errorResponse(error)
        } catch {
            return NodeHTTPAPI.errorResponse(.internalError("The request failed: \(error)"))
        }
    }
}
