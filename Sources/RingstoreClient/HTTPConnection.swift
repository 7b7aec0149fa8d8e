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
    /// No endpoint could be reached; nothing was sent.
    case unreachable(endpoints: [Endpoint], reason: String)
    /// The endpoint took the request but did not answer in time.
    case timedOut(Endpoint)
    /// The endpoint answered with something that is not HTTP.
    case malformedReply(Endpoint)
    /// A write reached a node (`node`, `address`) but its reply never came; the write
    /// may or may not have been applied. The client does not send it again on its
    /// own, because a second copy would become a concurrent version (a sibling).
    case writeOutcomeUnknown(node: String, address: String, reason: String)

    public var description: String {
        switch self {
        case .unreachable(let endpoints, let reason):
            "could not reach \(endpoints.map(\.description).joined(separator: " or ")): \(reason)"
        case .timedOut(let endpoint): "\(endpoint) did not answer in time"
        case .malformedReply(let endpoint): "\(endpoint) sent a reply that is not HTTP"
        case .writeOutcomeUnknown(let node, let address, let reason):
            "the write was sent to \(node) (\(address)) but no reply came (\(reason)); it may or may not have been applied. Read the key to find out before writing again."
        }
    }
}
