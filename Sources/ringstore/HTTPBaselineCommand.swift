import ArgumentParser
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// `ringstore bench http-baseline`: the cheapest server that answers the same
/// requests as a node (GET returns a 100-byte value, PUT collects the body and
/// answers 204), on Hummingbird or on SwiftNIO's HTTP/1 codec alone. The node's
/// figures are read against these: the difference is what Ringstore itself costs.
struct HTTPBaselineCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "http-baseline",
        abstract: "Serve trivial HTTP routes, as the ceiling a node is measured against."
    )

    @Option(help: "Address to listen on, HOST:PORT.")
    var http: String = "127.0.0.1:8090"

    @Option(help: "Bytes in the GET reply.")
    var valueBytes: Int = 100

    enum Stack: String, ExpressibleByArgument, CaseIterable {
        case hummingbird
        /// SwiftNIO's HTTP/1 codec with one handler on the event loop.
        case nio
    }

    @Option(help: "The HTTP stack: hummingbird, or nio (SwiftNIO's HTTP/1 codec with one handler on the event loop).")
    var server: Stack = .hummingbird

    func run() async throws {
        guard let (host, port) = HostPort.parse(http) else { throw ValidationError("--http must be HOST:PORT") }
        let value = ByteBuffer(repeating: UInt8(ascii: "v"), count: valueBytes)
        if server == .nio {
            let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.backlog, value: 256)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                        try channel.pipeline.syncOperations.addHandler(BaselineHandler(value: value))
                    }
                }
                .bind(host: host, port: port).get()
            print("http-baseline listening on http://\(host):\(channel.localAddress?.port ?? port)")
            try await channel.closeFuture.get()
            return
        }
        let router = Router()
        router.get("/v1/kv/:table/:key") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/octet-stream"], body: ResponseBody(byteBuffer: value))
        }
        router.put("/v1/kv/:table/:key") { request, _ -> HTTPResponse.Status in
            var request = request
            _ = try await request.collectBody(upTo: 1 << 20)
            return .noContent
        }
        let app = Application(
            router: router,
            configuration: ApplicationConfiguration(address: .hostname(host, port: port)),
            onServerRunning: { channel in print("http-baseline listening on http://\(host):\(channel.localAddress?.port ?? port)") },
            logger: Logger(label: "baseline") { _ in SwiftLogNoOpLogHandler() })
        try await app.runService()
    }
}

/// Answers every request on the event loop: a GET with the value, anything else 204.
final class BaselineHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let value: ByteBuffer
    var method: HTTPMethod = .GET
    var keepAlive = true
    init(value: ByteBuffer) { self.value = value }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            method = head.method
            keepAlive = head.isKeepAlive
        case .body:
            break
        case .end:
            var headers = HTTPHeaders()
            let status: HTTPResponseStatus
            if method == .GET {
                status = .ok
                headers.add(name: "Content-Type", value: "application/octet-stream")
                headers.add(name: "Content-Length", value: String(value.readableBytes))
            } else {
                status = .noContent
            }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
            if method == .GET { context.write(wrapOutboundOut(.body(.byteBuffer(value))), promise: nil) }
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}
