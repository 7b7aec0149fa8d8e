import ArgumentParser
import Foundation
import RingstoreClient

/// Options every client command shares.
struct ClientOptions: ParsableArguments {
    @Option(name: .customLong("url"), help: "Ringstore HTTP endpoint(s), comma-separated; the next is tried when one is unreachable. The ring is fetched from them and the request goes straight to a node of the key; HTTP is used when no ring can be. Default: $RINGSTORE_URL, else the two ring servers of `ringstore dev` (8080 is also a lone node's port), then its first nodes.")
    var urls: String = ProcessInfo.processInfo.environment["RINGSTORE_URL"] ?? ClientOptions.defaultURLs

    /// The ring servers of `ringstore dev` (8080 is also `ringstore node`'s default
    /// address), then its first nodes, which serve from their cached ring when both
    /// ring servers are down.
    static let defaultURLs = "http://127.0.0.1:8080,http://127.0.0.1:8081,http://127.0.0.1:8101,http://127.0.0.1:8102"

    @Option(help: "Table to use.")
    var table: String = "default"

    @Flag(help: "Send the request over the node protocol to a ring server, which passes it on to a node of the key, instead of straight to the node (for a client that can reach the ring servers only).")
    var throughRingServers = false

    func validate() throws {
        _ = try endpoints()
    }

    func endpoints() throws -> [Endpoint] { try Endpoint.list(parsing: urls) }

    /// A partition-aware client: it fetches the ring from the URLs and sends the request
    /// straight to a node of the key (or through a ring server), or over HTTP when no
    /// ring can be used (a lone node, an old server) or no node answers.
    func client() throws -> RingstoreClusterClient {
        var configuration = ClusterClientConfiguration()
        if throughRingServers { configuration.routing = .throughRingServers }
        return RingstoreClusterClient(endpoints: try endpoints(), configuration: configuration)
    }
}

/// Exit codes of the client commands: 0 done, 1 key not found, 2 the request failed.
enum ClientExit {
    static let notFound: Int32 = 1
    static let failed: Int32 = 2

    /// Runs `body`, turning client errors into a message on standard error and a non-zero
    /// exit; closes the client's connections either way.
    static func run(_ client: RingstoreClusterClient, _ body: () async throws -> Void) async throws {
        do {
            try await body()
            await client.shutdown()
        } catch let error as RingstoreError {
            await client.shutdown()
            FileHandle.standardError.write(Data("ringstore: \(error)\n".utf8))
            throw ExitCode(failed)
        } catch let error as TransportError {
            await client.shutdown()
            FileHandle.standardError.write(Data("ringstore: \(error)\n".utf8))
            throw ExitCode(failed)
        } catch {
            await client.shutdown()
            throw error
        }
    }
}

struct PutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "put", abstract: "Store a value under a key.")

    @OptionGroup var options: ClientOptions

    @Argument(help: "The key.")
    var key: String

    @Argument(help: "The value; omit it (or give --file) to read standard input.")
    var value: String?

    @Option(help: "Read the value from this file ('-' for standard input).")
    var file: String?

    @Option(help: "Content type stored with the value.")
    var contentType: String = "text/plain; charset=utf-8"

    @Option(help: "Context from an earlier get, so this write supersedes what it read.")
    var context: String?

    func validate() throws {
        if value != nil && file != nil { throw ValidationError("Give the value as an argument or with --file, not both.") }
    }

    func run() async throws {
        let bytes: [UInt8]
        if let value {
            bytes = Array(value.utf8)
        } else if let file, file != "-" {
            guard let data = FileManager.default.contents(atPath: file) else { throw ValidationError("Cannot read \(file).") }
            bytes = Array(data)
        } else {
            bytes = Array(FileHandle.standardInput.readDataToEndOfFile())
        }
        let client = try options.client()
        try await ClientExit.run(client) {
            let newContext = try await client.put(table: options.table, key: key, value: bytes, contentType: contentType, context: context)
            print("stored \(options.table)/\(key) (\(bytes.count) bytes) context=\(newContext)")
        }
    }
}

struct GetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get", abstract: "Print the value of a key (exit 1 if it has none).")

    @OptionGroup var options: ClientOptions

    @Argument(help: "The key.")
    var key: String

    @Flag(name: .shortAndLong, help: "Also print the content type and context (to standard error).")
    var verbose = false

    func run() async throws {
        let client = try options.client()
        try await ClientExit.run(client) {
            switch try await client.get(table: options.table, key: key) {
            case .value(let data, let contentType, let context):
                if verbose { FileHandle.standardError.write(Data("content-type: \(contentType)\ncontext: \(context)\n".utf8)) }
                FileHandle.standardOutput.write(Data(data))
                if isatty(STDOUT_FILENO) != 0 && data.last != UInt8(ascii: "\n") { print() }
            case .siblings(let siblings, let context):
                print("\(siblings.count) concurrent versions; write with --context \(context) to resolve them:")
                for (index, sibling) in siblings.enumerated() {
                    let text = sibling.deleted ? "(deleted)" : String(decoding: sibling.data, as: UTF8.self)
                    print("[\(index + 1)] \(sibling.deleted ? "" : sibling.contentType + ": ")\(text)")
                }
            case .notFound:
                FileHandle.standardError.write(Data("ringstore: \(options.table)/\(key) not found\n".utf8))
                throw ExitCode(ClientExit.notFound)
            }
        }
    }
}

struct DeleteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete a key.")

    @OptionGroup var options: ClientOptions

    @Argument(help: "The key.")
    var key: String

    @Option(help: "Context from an earlier get, so the delete supersedes what it read.")
    var context: String?

    func run() async throws {
        let client = try options.client()
        try await ClientExit.run(client) {
            try await client.delete(table: options.table, key: key, context: context)
            print("deleted \(options.table)/\(key)")
        }
    }
}

extension Endpoint {
    /// The endpoints of a `--url` option: `http://HOST:PORT`, comma-separated.
    static func list(parsing urls: String) throws -> [Endpoint] {
        let parts = urls.split(separator: ",").map(String.init)
        let endpoints = parts.compactMap(Endpoint.init(parsing:))
        guard !parts.isEmpty, endpoints.count == parts.count else {
            throw ValidationError("--url must be http://HOST:PORT (comma-separated for several); got '\(urls)'.")
        }
        return endpoints
    }
}
