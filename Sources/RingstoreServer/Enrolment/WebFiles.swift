import Foundation
import Hummingbird
import HTTPTypes
import NIOCore
import Synchronization

/// The enrolment app and the dashboard as static files: `/` is `index.html`,
/// `/dashboard` is `dashboard.html`, `/assets/…` everything under `assets/`.
///
/// The files ship in the binary's resources (`Sources/RingstoreServer/Web`), read
/// once and kept in memory; with a web root (`--web-root DIR`) they are read from
/// that folder on every request instead, so edits show without a rebuild.
final class WebFiles: Sendable {
    let root: String?
    private let cache = Mutex<[String: [UInt8]]>([:])

    init(webRoot: String?) {
        if let webRoot {
            root = webRoot
        } else {
            root = Bundle.module.url(forResource: "Web", withExtension: nil)?.path
        }
        self.readEveryTime = webRoot != nil
    }

    private let readEveryTime: Bool

    /// Whether a path is one of the app's pages or assets.
    static func serves(_ path: String) -> Bool {
        path == "/" || path == "/index.html" || path == "/dashboard" || path == "/dashboard/" || path.hasPrefix("/assets/")
    }

    func response(for request: Request) throws(APIError) -> Response {
        guard request.method == .get || request.method == .head else {
            throw .methodNotAllowed(request.method, path: request.uri.path, allowed: [.get, .head])
        }
        let path = request.uri.path
        let relative: String
        switch path {
        case "/", "/index.html": relative = "index.html"
        case "/dashboard", "/dashboard/": relative = "dashboard.html"
        default:
            let rest = String(path.dropFirst("/assets/".count))
            let decoded = rest.removingPercentEncoding ?? rest
            let segments = decoded.split(separator: "/", omittingEmptySubsequences: false)
            guard !segments.isEmpty, segments.allSatisfy({ Self.isSafe($0) }) else { throw .routeNotFound(path) }
            relative = "assets/" + segments.joined(separator: "/")
        }
        guard let bytes = read(relative) else { throw .routeNotFound(path) }
        var headers = HTTPFields()
        headers[.contentType] = Self.contentType(of: relative)
        headers[.cacheControl] = relative.hasSuffix(".html") ? "no-cache" : "max-age=60"
        if request.method == .head {
            headers[.contentLength] = String(bytes.count)
            return Response(status: .ok, headers: headers)
        }
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// A path segment that names a file in its folder: letters, digits, `.`, `-`, `_`, not starting with a dot.
    private static func isSafe(_ segment: Substring) -> Bool {
        guard let first = segment.first, first != "." else { return false }
        return segment.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_") }
    }

    private func read(_ relative: String) -> [UInt8]? {
        guard let root else { return nil }
        if !readEveryTime, let cached = cache.withLock({ $0[relative] }) { return cached }
        guard let data = FileManager.default.contents(atPath: root + "/" + relative) else { return nil }
        let bytes = Array(data)
        if !readEveryTime { cache.withLock { $0[relative] = bytes } }
        return bytes
    }

    static func contentType(of path: String) -> String {
        switch path.split(separator: ".").last.map(String.init) ?? "" {
        case "html": "text/html; charset=utf-8"
        case "js", "mjs": "text/javascript; charset=utf-8"
        case "css": "text/css; charset=utf-8"
        case "svg": "image/svg+xml"
        case "png": "image/png"
        case "ico": "image/x-icon"
        case "woff2": "font/woff2"
        case "json": "application/json"
        case "txt": "text/plain; charset=utf-8"
        default: "application/octet-stream"
        }
    }
}
