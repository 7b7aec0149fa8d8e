import ArgumentParser
import Hummingbird
import Logging
import NIOCore

/// `ringstore bench http-baseline`: the cheapest Hummingbird server that answers the
/// same requests as a node (GET returns a 100-byte value, PUT collects the body and
/// answers 204). The node's figures are read against this one: the difference is
/// what Ringstore itself costs.
struct HTTPBaselineCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "http-baseline",
        abstract: "Serve trivial Hummingbird routes, as the ceiling a node is measured against."
    )

    @Option(help: "Address to listen on, HOST:PORT.")
    var http: String = "127.0.0.1:8090"

    @Option(help: "Bytes in the GET reply.")
    var valueBytes: Int = 100

    func run() async throws {
        guard let (host, port) = HostPort.parse(http) else { throw ValidationError("--http must be HOST:PORT") }
        let value = ByteBuffer(repeating: UInt8(ascii: "v"), count: valueBytes)
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
