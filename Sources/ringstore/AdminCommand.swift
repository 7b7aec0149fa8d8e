import ArgumentParser
import Foundation
import NIOCore
import RingstoreClient

/// `ringstore admin`: cluster administration through the ring servers' `/v1/admin/…`.
struct AdminCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin",
        abstract: "Administer a cluster: stage join/leave/remove, review the plan, commit it, watch the transfers.",
        discussion: """
        Changes are staged, then committed (as Riak's plan/commit): `join n6`, `leave n2`
        or `remove n3` stage an action; `plan` shows the partitions that will move;
        `commit` starts the transfers; `status` shows their progress. The ring switches
        once every moving partition has streamed to its new holders.
        """,
        subcommands: [Status.self, Ring.self, Plan.self, Join.self, Leave.self, Remove.self, Commit.self, Cancel.self, Repair.self]
    )

    struct Options: ParsableArguments {
        @Option(name: .customLong("url"), help: "Ring server HTTP endpoints, comma-separated; the other is tried when one is down or not primary. Default: $RINGSTORE_URL, else the ring servers of `ringstore dev`.")
        var urls: String = ProcessInfo.processInfo.environment["RINGSTORE_URL"] ?? "http://127.0.0.1:8080,http://127.0.0.1:8081"

        @Option(help: "The admin bearer token. Default: $RINGSTORE_ADMIN_TOKEN, else the file given with --token-file.")
        var token: String?

        @Option(help: "A file holding the admin token (`ringstore dev` writes DATA/admin-token).")
        var tokenFile: String?

        @Flag(help: "Print the server's JSON instead of a summary.")
        var json = false

        func endpoints() throws -> [Endpoint] { try Endpoint.list(parsing: urls) }

        func bearer() throws -> String {
            if let token, !token.isEmpty { return token }
            if let environment = ProcessInfo.processInfo.environment["RINGSTORE_ADMIN_TOKEN"], !environment.isEmpty { return environment }
            if let tokenFile {
                guard let data = FileManager.default.contents(atPath: tokenFile) else {
                    throw ValidationError("--token-file \(tokenFile) cannot be read.")
                }
                return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            }
            throw ValidationError("The admin API needs a token: --token, $RINGSTORE_ADMIN_TOKEN or --token-file.")
        }

        func validate() throws {
            _ = try endpoints()
        }
    }

    /// Sends one admin request to the first ring server that can take it and prints the answer.
    static func perform(_ options: Options, method: String, path: String, summary: (([String: Any]) -> String)? = nil) async throws {
        let token = try options.bearer()
        var failures: [String] = []
        for endpoint in try options.endpoints() {
            let client = RingstoreHTTPClient(endpoints: [endpoint], timeout: .seconds(30))
            let reply: HTTPReply
            do {
                reply = try await client.send(method: method, path: path, headers: [("Authorization", "Bearer \(token)")])
            } catch {
                failures.append("\(endpoint): \(error)")
                continue
            }
            let json = (try? JSONSerialization.jsonObject(with: Data(reply.body))) as? [String: Any]
            if reply.status == 503 {
                failures.append("\(endpoint): \(json?["message"] as? String ?? "unavailable")")
                continue  // not primary, or a failover under way: ask the other ring server
            }
            guard (200..<300).contains(reply.status) else {
                let message = json?["message"] as? String ?? String(decoding: reply.body, as: UTF8.self)
                FileHandle.standardError.write(Data("ringstore admin: \(message) (HTTP \(reply.status))\n".utf8))
                throw ExitCode(2)
            }
            if options.json || summary == nil || json == nil {
                if !reply.body.isEmpty { say(String(decoding: reply.body, as: UTF8.self)) }
            } else if let json, let summary {
                say(summary(json))
            }
            return
        }
        FileHandle.standardError.write(Data("ringstore admin: no ring server took the request:\n  \(failures.joined(separator: "\n  "))\n".utf8))
        throw ExitCode(2)
    }

    static func statusSummary(_ json: [String: Any]) -> String {
        var lines: [String] = []
        lines.append("ring server \(json["ring_server"] ?? "?") (\(json["role"] ?? "?"), term \(json["term"] ?? "?")); primary \(json["primary"] ?? "?"); ring epoch \(json["ring_epoch"] ?? 0)")
        for member in json["members"] as? [[String: Any]] ?? [] {
            let after = (member["partitions_after"] as? Int).map { " → \($0)" } ?? ""
            lines.append("  \(member["id"] ?? "?")  \(member["status"] ?? "?")\((member["reachable"] as? Bool) == true ? "" : " (unreachable)")  partitions \(member["partitions"] ?? 0)\(after)")
        }
        if let transition = json["transition"] as? [String: Any] {
            lines.append("transition: \(transition["transfers_done"] ?? 0) of \(transition["transfers_required"] ?? 0) transfers done")
        } else {
            lines.append("no ring change in progress")
        }
        if let plan = json["plan"] as? [String: Any] { lines.append("staged plan: " + planSummary(plan)) }
        return lines.joined(separator: "\n")
    }

    static func planSummary(_ json: [String: Any]) -> String {
        let actions = (json["actions"] as? [[String: String]] ?? []).flatMap { $0.map { "\($0.key) \($0.value)" } }
        let moves = (json["ownership_moves"] as? [Any])?.count ?? 0
        let balance = (json["partitions_per_node"] as? [String: Int] ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        return "\(actions.joined(separator: ", ")); \(moves) partitions change owner, \(json["transfers"] ?? 0) transfers; afterwards \(balance.joined(separator: " "))"
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Members, the staged plan and the progress of a ring change.")
        @OptionGroup var options: Options
        func run() async throws { try await AdminCommand.perform(options, method: "GET", path: "/v1/admin/status", summary: AdminCommand.statusSummary) }
    }

    struct Ring: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The ring (partition owners), and the one being moved to.")
        @OptionGroup var options: Options
        func run() async throws { try await AdminCommand.perform(options, method: "GET", path: "/v1/admin/ring") }
    }

    struct Plan: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The staged plan: actions, moving partitions, the balance afterwards.")
        @OptionGroup var options: Options
        func run() async throws {
            try await AdminCommand.perform(options, method: "GET", path: "/v1/admin/plan") { "staged plan: " + AdminCommand.planSummary($0) }
        }
    }

    struct Join: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stage the join of a registered node (started with --join).")
        @OptionGroup var options: Options
        @Argument(help: "The node's id.") var node: String
        func run() async throws { try await AdminCommand.stage("join", node, options) }
    }

    struct Leave: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stage a member's departure; its partitions stream out before it goes.")
        @OptionGroup var options: Options
        @Argument(help: "The node's id.") var node: String
        func run() async throws { try await AdminCommand.stage("leave", node, options) }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stage the removal of a dead member; its replicas are rebuilt from the others.")
        @OptionGroup var options: Options
        @Argument(help: "The node's id.") var node: String
        func run() async throws { try await AdminCommand.stage("remove", node, options) }
    }

    static func stage(_ action: String, _ node: String, _ options: Options) async throws {
        try await perform(options, method: "POST", path: "/v1/admin/\(action)/\(escape(node))") { "staged: " + planSummary($0) }
    }

    struct Commit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Commit the staged plan: partitions start streaming.")
        @OptionGroup var options: Options
        func run() async throws { try await AdminCommand.perform(options, method: "POST", path: "/v1/admin/commit", summary: AdminCommand.statusSummary) }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Drop the staged plan (before it is committed).")
        @OptionGroup var options: Options
        func run() async throws { try await AdminCommand.perform(options, method: "DELETE", path: "/v1/admin/plan") }
    }

    struct Repair: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run a full anti-entropy round on every node now and report what it repaired.")
        @OptionGroup var options: Options
        func run() async throws {
            try await AdminCommand.perform(options, method: "POST", path: "/v1/admin/repair") { json in
                var lines = ["anti-entropy: \(json["exchanges"] ?? 0) exchanges, \(json["differing"] ?? 0) differing, \(json["keys_repaired"] ?? 0) keys repaired, \(json["failed"] ?? 0) failed, \(json["tombstones_purged"] ?? 0) tombstones purged"]
                for (node, counts) in (json["nodes"] as? [String: [String: Any]] ?? [:]).sorted(by: { $0.key < $1.key }) {
                    if let error = counts["error"] {
                        lines.append("  \(node): not reached (\(error))")
                    } else {
                        lines.append("  \(node): \(counts["exchanges"] ?? 0) exchanges, \(counts["keys_repaired"] ?? 0) keys repaired, \(counts["tombstones_purged"] ?? 0) tombstones purged")
                    }
                }
                return lines.joined(separator: "\n")
            }
        }
    }

    static func escape(_ node: String) -> String {
        node.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? node
    }
}
