import NIOCore
import NIOHTTP1
import NIOPosix

/// Where a Ringstore process serves HTTP: `http://host:port`.
public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `http://host:port`, `host:port` or `:port` (loopback).
    public init?(parsing text: String) {
        var rest = Substring(text)
        if rest.hasPrefix("http://") { rest = rest.dropFirst(7) }
        while rest.hasSuffix("/") { rest = rest.dropLast() }
        guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]), (0...65535).contains(port) else { return nil }
        var host = String(rest[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.host = host.isEmpty ? "127.0.0.1" : host
        self.port = port
    }

    public var description: String { "http://\(host.contains(":") ? "[\(host)]" : host):\(port)" }
}

/// One HTTP response, whole.
public struct HTTPReply: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    /// The first header of that name, compared without case.
    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    public var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// Why a request got no reply.
public enum TransportError: Error, Sendable, CustomStringConvertible {
    case unreachable(endpoints: [Endpoint], reason: String)
    case timedOut(Endpoint)
    case malformedReply(Endpoint)

    public var description: String {
        switch self {
        case .unreachable(let endpoints, let reason):
            "could not reach \(endpoints.map(\.description).joined(separator: " or ")): \(reason)"
        case .timedOut(let endpoint): "\(endpoint) did not answer in time"
        case .malformedReply(let endpoint): "\(endpoint) sent a reply that is not HTTP"
        }
    }
}

/// Sends one HTTP/1.1 request on a fresh connection and reads the whole reply.
/// Small and dependency-free on purpose: the CLI and tests need nothing more.
enum HTTPExchange {
    static func send(
        to endpoint: Endpoint, method: HTTPMethod, path: String, headers: [(String, String)], body: [UInt8]?,
        timeout: TimeAmount, group: any EventLoopGroup
    ) async throws -> HTTPReply {
        let channel = try await ClientBootstrap(group: group)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(host: endpoint.host, port: endpoint.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                }
            }
        return try await withThrowingTaskGroup(of: HTTPReply?.self) { tasks in
            tasks.addTask {
                try await exchange(on: channel, endpoint: endpoint, method: method, path: path, headers: headers, body: body)
            }
            tasks.addTask {
                try await Task.sleep(for: .nanoseconds(timeout.nanoseconds))
                return nil
            }
            defer { tasks.cancelAll() }
            guard let reply = try await tasks.next()! else {
                channel.channel.close(promise: nil)
                throw TransportError.timedOut(endpoint)
            }
            return reply
        }
    }

    private static func exchange(
        on channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>, endpoint: Endpoint,
        method: HTTPMethod, path: String, headers: [(String, String)], body: [UInt8]?
    ) async throws -> HTTPReply {
        try await channel.executeThenClose { inbound, outbound in
            var head = HTTPRequestHead(version: .http1_1, method: method, uri: path)
            head.headers.add(name: "Host", value: "\(endpoint.host):\(endpoint.port)")
            head.headers.add(name: "Connection", value: "close")
            for (name, value) in headers { head.headers.add(name: name, value: value) }
            head.headers.add(name: "Content-Length", value: String(body?.count ?? 0))
            // The server may answer (a 413, an unknown table) and close before it has read
            // the whole body, so the request is written while the reply is read: a failed
            // write must not hide the reply that explains it.
            let requestHead = head
            return try await withThrowingTaskGroup(of: Void.self) { writer in
                writer.addTask {
                    try? await outbound.write(.head(requestHead))
                    if let body, !body.isEmpty { try? await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body)))) }
                    try? await outbound.write(.end(nil))
                }
                defer { writer.cancelAll() }
                var reply: HTTPReply?
                for try await part in inbound {
                    switch part {
                    case .head(let responseHead):
                        reply = HTTPReply(status: Int(responseHead.status.code), headers: responseHead.headers.map { ($0.name, $0.value) }, body: [])
                    case .body(let buffer):
                        reply?.body.append(contentsOf: buffer.readableBytesView)
                    case .end:
                        guard let reply else { throw TransportError.malformedReply(endpoint) }
                        return reply
                    }
                }
                throw TransportError.malformedReply(endpoint)
            }
        }
    }
}
