import Foundation
public import NIOCore
import NIOHTTP1
public import NIOPosix

/// What a read returned.
public enum ReadOutcome: Sendable, Equatable {
    /// One value, its content type and the context to send back with a write.
    case value(data: [UInt8], contentType: String, context: String)
    /// Concurrent versions; write with `context` to resolve them.
    case siblings([SiblingValue], context: String)
    /// No value (`context` is set if the key was deleted and the tombstone is still known).
    case notFound(context: String?)
}

/// One of several concurrent versions of a key.
public struct SiblingValue: Sendable, Equatable, Decodable {
    public var contentType: String
    public var valueBase64: String
    public var deleted: Bool

    public var data: [UInt8] { Data(base64Encoded: valueBase64).map(Array.init) ?? [] }

    enum CodingKeys: String, CodingKey {
        case contentType = "content_type"
        case valueBase64 = "value_base64"
        case deleted
    }
}

/// An error reply from the server: its status and JSON error body.
public struct RingstoreError: Error, Sendable, CustomStringConvertible {
    public var status: Int
    public var code: String
    public var message: String

    public var description: String { "\(message) (HTTP \(status), \(code))" }
}

/// A Ringstore client over the HTTP API. It knows several endpoints (both ring
/// servers, or any nodes) and moves to the next when one cannot be reached. It keeps
/// HTTP/1.1 connections open for reuse (up to 64 idle ones per endpoint), closed when
/// the client is released or with `closeIdleConnections()`.
public final class RingstoreHTTPClient: Sendable {
    /// Where requests go, in order of preference.
    public let endpoints: [Endpoint]
    private let timeout: TimeAmount
    /// Where the client's connections live.
    public let group: any EventLoopGroup

    public init(endpoints: [Endpoint], timeout: TimeAmount = .seconds(10), group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        precondition(!endpoints.isEmpty, "a client needs at least one endpoint")
        self.endpoints = endpoints
        self.timeout = timeout
        self.group = group
        self.pool = HTTPConnectionPool(group: group)
    }

    private let pool: HTTPConnectionPool

    /// Closes the connections kept for reuse; later requests open new ones.
    public func closeIdleConnections() {
        pool.closeIdle()
    }

    /// Sends a request to `endpoint` alone, with its own deadline.
    func send(
        to endpoint: Endpoint, method: String, path: String, headers: [(String, String)] = [], body: [UInt8]? = nil, timeout: TimeAmount
    ) async throws -> HTTPReply {
        try await pool.send(to: endpoint, method: HTTPMethod(rawValue: method), path: path, headers: headers, body: body, timeout: timeout)
    }

    /// Sends a request to the first endpoint that answers (a `TransportError` from one
    /// moves on to the next).
    public func send(method: String, path: String, headers: [(String, String)] = [], body: [UInt8]? = nil) async throws -> HTTPReply {
        var failures: [String] = []
        for endpoint in endpoints {
            do {
                return try await pool.send(
                    to: endpoint, method: HTTPMethod(rawValue: method), path: path, headers: headers, body: body, timeout: timeout)
            } catch let error as TransportError {
                failures.append(error.description)
            } catch {
                failures.append("\(endpoint): \(error)")
            }
        }
        throw TransportError.unreachable(endpoints: endpoints, reason: failures.joined(separator: "; "))
    }

    /// Reads a key; `r` overrides the table's read quorum (`?r=`).
    public func get(table: String = "default", key: String, r: Int? = nil) async throws -> ReadOutcome {
        let reply = try await send(method: "GET", path: Self.keyPath(table: table, key: key, quorum: r.map { ("r", $0) }))
        let context = reply.header("X-Ringstore-Context")
        switch reply.status {
        case 200:
            return .value(data: reply.body, contentType: reply.header("Content-Type") ?? "application/octet-stream", context: context ?? "")
        case 300:
            struct Body: Decodable { var context: String; var siblings: [SiblingValue] }
            let body = try JSONDecoder().decode(Body.self, from: Data(reply.body))
            return .siblings(body.siblings, context: body.context)
        case 404 where Self.errorCode(reply) == "key_not_found":
            return .notFound(context: context)
        default:
            throw Self.error(from: reply)
        }
    }

    /// Stores a value; returns the new context. `w` overrides the table's write quorum (`?w=`).
    @discardableResult
    public func put(
        table: String = "default", key: String, value: [UInt8], contentType: String? = nil, context: String? = nil, w: Int? = nil
    ) async throws -> String {
        var headers: [(String, String)] = []
        if let contentType { headers.append(("Content-Type", contentType)) }
        if let context { headers.append(("X-Ringstore-Context", context)) }
        let reply = try await send(method: "PUT", path: Self.keyPath(table: table, key: key, quorum: w.map { ("w", $0) }), headers: headers, body: value)
        guard reply.status == 204 else { throw Self.error(from: reply) }
        return reply.header("X-Ringstore-Context") ?? ""
    }

    /// Deletes a key (writes a tombstone); returns the new context. `w` overrides the
    /// table's write quorum (`?w=`).
    @discardableResult
    public func delete(table: String = "default", key: String, context: String? = nil, w: Int? = nil) async throws -> String {
        let headers = context.map { [("X-Ringstore-Context", $0)] } ?? []
        let reply = try await send(method: "DELETE", path: Self.keyPath(table: table, key: key, quorum: w.map { ("w", $0) }), headers: headers)
        guard reply.status == 204 else { throw Self.error(from: reply) }
        return reply.header("X-Ringstore-Context") ?? ""
    }

    /// `/v1/kv/{table}/{key}` with both parts percent-encoded.
    public static func keyPath(table: String, key: String) -> String {
        "/v1/kv/\(percentEncode(table))/\(percentEncode(key))"
    }

    /// `keyPath(table:key:)` with an optional `?r=` or `?w=` quorum.
    static func keyPath(table: String, key: String, quorum: (name: String, value: Int)?) -> String {
        let path = keyPath(table: table, key: key)
        guard let quorum else { return path }
        return "\(path)?\(quorum.name)=\(quorum.value)"
    }

    /// Percent-encodes every byte but the unreserved characters of RFC 3986.
    public static func percentEncode(_ text: String) -> String {
        var result = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                result.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = String(byte, radix: 16, uppercase: true)
                result += "%" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return result
    }

    static func errorCode(_ reply: HTTPReply) -> String? {
        struct Body: Decodable { var error: String }
        return try? JSONDecoder().decode(Body.self, from: Data(reply.body)).error
    }

    /// The server's error as a Swift error; a reply without a JSON body still says its status.
    public static func error(from reply: HTTPReply) -> RingstoreError {
        struct Body: Decodable { var error: String; var message: String }
        if let body = try? JSONDecoder().decode(Body.self, from: Data(reply.body)) {
            return RingstoreError(status: reply.status, code: body.error, message: body.message)
        }
        return RingstoreError(status: reply.status, code: "http_\(reply.status)", message: "The server answered HTTP \(reply.status).")
    }
}
