import Foundation
import Hummingbird
import HummingbirdCore
import HTTPTypes
import NIOCore
import RingstoreCore

/// The keys of linearizable tables over HTTP: reads and writes with `ETag`,
/// `If-Match` and `If-None-Match`, and the counter and set operations under `POST`.
extension NodeHTTPAPI {
    static let kindHeader = HTTPField.Name("X-Ringstore-Kind")!

    /// The operations `POST /v1/kv/{table}/{key}/{operation}` takes.
    static let linearizableOperations = ["add", "set-add", "set-remove"]

    /// Serves a key of a linearizable table — a GET, PUT or DELETE, or with
    /// `operation` a POST of one of `linearizableOperations` — and answers through
    /// `done` (once, on any thread). Nothing here waits: the fast path calls it on an
    /// event loop.
    func serveLinearizable(
        method: HTTPRequest.Method, uri: URI, headers: HTTPFields, table: TableDefinition, rawKey: String, operation: String?,
        body: ByteBuffer?, done: @escaping @Sendable (HTTPReply) -> Void
    ) {
        let path = uri.path
        let answer: @Sendable (_ respond: @escaping @Sendable (LinearizableAnswer) throws -> HTTPReply) -> @Sendable (Result<LinearizableAnswer, any Error>) -> Void = { [self] respond in
            { result in
                do {
                    done(try respond(result.get()))
                } catch {
                    done(errorReply(error, path: path))
                }
            }
        }
        do {
            if let operation {
                let (key, change) = try Self.operation(operation, uri: uri, headers: headers, rawKey: rawKey)
                return linearizable.run(table: table, key: key, change: change, done: answer(Self.operationReply))
            }
            let key = try Self.decodeKey(rawKey)
            try Self.refuseEventualParameters(uri, headers)
            switch method {
            case .get:
                guard case .none = try Self.precondition(from: headers) else {
                    throw APIError(.badRequest, code: "invalid_precondition", message: "If-Match and If-None-Match apply to PUT and DELETE; a read always returns the current value and its ETag.")
                }
                linearizable.run(table: table, key: key, change: .read, done: answer { try Self.readReply($0, table: table.name) })
            case .put:
                let precondition = try Self.precondition(from: headers)
                let value = body.map { Array($0.readableBytesView) } ?? []
                guard value.count <= maxValueBytes else { throw APIError(InputError.valueTooLarge(bytes: value.count, max: maxValueBytes)) }
                let contentType = headers[.contentType] ?? Self.defaultContentType
                do { try Validation.checkContentType(contentType) } catch { throw APIError(error) }
                linearizable.run(
                    table: table, key: key, change: .put(contentType: contentType, data: value, precondition: precondition), done: answer(Self.writeReply))
            case .delete:
                let precondition = try Self.precondition(from: headers)
                linearizable.run(table: table, key: key, change: .delete(precondition: precondition), done: answer(Self.writeReply))
            default:
                throw APIError.internalError("internal inconsistency in routing: \(method) reached the linearizable handler")
            }
        } catch {
            done(errorReply(error, path: path))
        }
    }

    /// The key and change of `POST /v1/kv/{table}/{key}/{operation}`.
    static func operation(_ operation: String, uri: URI, headers: HTTPFields, rawKey: String) throws(APIError) -> ([UInt8], LinearizableChange) {
        guard linearizableOperations.contains(operation) else {
            throw APIError(.badRequest, code: "unknown_operation", message: "'\(operation)' is not an operation on a key; POST /v1/kv/{table}/{key}/ takes one of: \(linearizableOperations.joined(separator: ", ")).")
        }
        let key = try decodeKey(rawKey)
        try refuseEventualParameters(uri, headers)
        if headers[.ifMatch] != nil || headers[.ifNoneMatch] != nil {
            throw APIError(.badRequest, code: "invalid_precondition", message: "If-Match and If-None-Match apply to PUT and DELETE; '\(operation)' checks its own bounds.")
        }
        switch operation {
        case "add":
            guard let delta = try int64Parameter("delta", uri) else {
                throw invalidParameter("delta is required: the amount to add, a whole number (negative to subtract)")
            }
            let min = try int64Parameter("min", uri) ?? .min
            let max = try int64Parameter("max", uri) ?? .max
            guard min <= max else { throw invalidParameter("min=\(min) is above max=\(max)") }
            return (key, .counterAdd(delta: delta, min: min, max: max))
        case "set-add":
            let member = try memberParameter(uri)
            var cap = CASPaxosLimits.setMembersMax
            if let text = uri.queryParameters["cap"] {
                guard let value = Int(text), (1...CASPaxosLimits.setMembersMax).contains(value) else {
                    throw invalidParameter("cap=\(text) must be a whole number from 1 to \(CASPaxosLimits.setMembersMax)")
                }
                cap = value
            }
            // Query values arrive percent-decoded; `unless` may repeat.
            let conflicts = uri.queryParameters.getAll("unless")
            guard conflicts.isEmpty else {
                guard conflicts.count <= LinearizableChange.conflictsMax else {
                    throw invalidParameter("unless may name at most \(LinearizableChange.conflictsMax) members, got \(conflicts.count)")
                }
                for conflict in conflicts where conflict.isEmpty || conflict.utf8.count > CASPaxosLimits.setMemberBytesMax {
                    throw invalidParameter("unless must be 1 to \(CASPaxosLimits.setMemberBytesMax) bytes of UTF-8, got \(conflict.utf8.count)")
                }
                return (key, .setAddUnless(member: member, cap: cap, conflicts: conflicts))
            }
            return (key, .setAdd(member: member, cap: cap))
        default:
            return (key, .setRemove(member: try memberParameter(uri)))
        }
    }

    /// The answer to a counter or set operation: the value after it, with its ETag.
    static func operationReply(_ answer: LinearizableAnswer) throws -> HTTPReply {
        guard case .applied(let value) = answer else { return try writeReply(answer) }
        guard let value, value.exists else {
            // Removing from an absent (or deleted) key leaves it absent: an empty set.
            var reply = jsonReply(.ok, "{\"members\":[],\"count\":0}")
            if let value { reply.headers[.eTag] = etag(value) }
            reply.headers[kindHeader] = name(of: .set)
            return reply
        }
        var reply = jsonReply(.ok, valueJSON(value))
        describe(value, in: &reply.headers)
        return reply
    }

    // MARK: Parsing

    /// Linearizable keys have no per-request quorums and no contexts: every operation
    /// uses a majority, and versions are ETags.
    static func refuseEventualParameters(_ uri: URI, _ headers: HTTPFields) throws(APIError) {
        for name in ["r", "w"] where uri.queryParameters[Substring(name)] != nil {
            throw APIError(.badRequest, code: "not_applicable", message: "\(name) does not apply to a linearizable table: every operation uses a majority of the key's replicas.")
        }
        if headers[contextHeader] != nil {
            throw APIError(.badRequest, code: "not_applicable", message: "A linearizable table has no contexts; use the ETag with If-Match to write only over what you read.")
        }
    }

    /// The precondition of `If-Match` (`"<version>"` or `*`) or `If-None-Match: *`.
    static func precondition(from headers: HTTPFields) throws(APIError) -> LinearizablePrecondition {
        let ifMatch = headers[.ifMatch]
        let ifNoneMatch = headers[.ifNoneMatch]
        switch (ifMatch, ifNoneMatch) {
        case (nil, nil):
            return .none
        case (_?, _?):
            throw APIError(.badRequest, code: "invalid_precondition", message: "Send If-Match or If-None-Match, not both.")
        case (let text?, nil):
            let trimmed = text.trimmingCharacters(in: .whitespaces)
            if trimmed == "*" { return .ifExists }
            guard let version = parseETag(trimmed) else {
                throw APIError(.badRequest, code: "invalid_precondition", message: "If-Match must be * or one ETag exactly as this table returned it, quotes included, such as \"3\" (got \(text)).")
            }
            return .ifMatch(version: version)
        case (nil, let text?):
            guard text.trimmingCharacters(in: .whitespaces) == "*" else {
                throw APIError(.badRequest, code: "invalid_precondition", message: "If-None-Match takes only * (create the key only if it does not exist), got \(text).")
            }
            return .ifNoneMatch
        }
    }

    /// The version in an ETag spelled exactly as `etag(_:)` spells it: `"3"`, quotes
    /// included, no sign, no leading zero. ETags compare as strings, so `"03"` is not `"3"`.
    static func parseETag(_ text: String) -> UInt64? {
        guard text.count >= 3, text.first == "\"", text.last == "\"" else { return nil }
        let digits = text.dropFirst().dropLast()
        guard digits.allSatisfy({ $0.isASCII && $0.isNumber }), let version = UInt64(digits), version >= 1,
              String(version) == digits
        else { return nil }
        return version
    }

    static func etag(_ value: LinearizableValue) -> String { "\"\(value.version)\"" }

    static func int64Parameter(_ name: String, _ uri: URI) throws(APIError) -> Int64? {
        guard let text = uri.queryParameters[Substring(name)] else { return nil }
        guard let value = Int64(text) else { throw invalidParameter("\(name)=\(text) is not a whole number from \(Int64.min) to \(Int64.max)") }
        return value
    }

    static func memberParameter(_ uri: URI) throws(APIError) -> String {
        // Query values arrive percent-decoded.
        guard let raw = uri.queryParameters["member"] else {
            throw invalidParameter("member is required: the member to add or remove")
        }
        let member = String(raw)
        guard !member.isEmpty, member.utf8.count <= CASPaxosLimits.setMemberBytesMax else {
            throw invalidParameter("member must be 1 to \(CASPaxosLimits.setMemberBytesMax) bytes of UTF-8, got \(member.utf8.count)")
        }
        return member
    }

    static func invalidParameter(_ reason: String) -> APIError {
        APIError(.badRequest, code: "invalid_parameter", message: "\(reason).")
    }

    // MARK: Responses

    /// A read: the value with its ETag and kind, or 404.
    static func readReply(_ answer: LinearizableAnswer, table: String) throws -> HTTPReply {
        guard case .applied(let found) = answer else { return try writeReply(answer) }
        guard let value = found, value.exists else {
            throw APIError(.notFound, code: "key_not_found", message: "The key has no value in table '\(table)'.")
        }
        var reply: HTTPReply
        if case .bytes(let contentType, let data) = value.content {
            var headers = HTTPFields()
            headers[.contentType] = contentType
            reply = HTTPReply(status: .ok, headers: headers, body: ByteBuffer(bytes: data))
        } else {
            reply = jsonReply(.ok, valueJSON(value))
        }
        describe(value, in: &reply.headers)
        return reply
    }

    /// A put or delete (or the refusal and failure of any change): 204 with the new ETag,
    /// 412 or 409 with the current value, or 503.
    static func writeReply(_ answer: LinearizableAnswer) throws -> HTTPReply {
        switch answer {
        case .applied(let value):
            var reply = HTTPReply(status: .noContent)
            if let value { reply.headers[.eTag] = etag(value) }
            return reply
        case .refused(let reason, let current):
            throw refusalError(reason, current: current)
        case .failed(let failure, let message):
            throw unavailableError(failure, message: message)
        }
    }

    static func refusalError(_ reason: LinearizableRefusal, current: LinearizableValue?) -> APIError {
        var headers = HTTPFields()
        if let current, current.exists { headers[.eTag] = etag(current) }
        switch reason {
        case .preconditionFailed:
            let currentTag = current.flatMap { $0.exists ? JSONText.quote(etag($0)) : nil } ?? "null"
            return APIError(.preconditionFailed, code: "precondition_failed",
                            message: current?.exists == true ? "The key's current ETag is \(etag(current!)); the write was not applied." : "The key does not exist; the write was not applied.",
                            headers: headers, extraJSON: ",\"current_etag\":\(currentTag)")
        case .wrongKind(let expected, let found):
            return APIError(.conflict, code: "wrong_kind", message: "The key holds a \(name(of: found)), and this operation needs a \(name(of: expected)); nothing was changed.", headers: headers)
        case .counterOutOfBounds(let value, let delta, let min, let max):
            return APIError(.conflict, code: "counter_out_of_bounds",
                            message: "Adding \(delta) to \(value) would leave \(min)...\(max); nothing was changed.", headers: headers,
                            extraJSON: ",\"value\":\(value),\"delta\":\(delta),\"min\":\(min),\"max\":\(max)")
        case .setFull(let count, let cap):
            return APIError(.conflict, code: "set_full", message: "The set already holds \(count) members, its cap is \(cap); nothing was changed.", headers: headers,
                            extraJSON: ",\"count\":\(count),\"cap\":\(cap)")
        case .memberTooLong(let bytes, let max):
            return invalidParameter("member must be 1 to \(max) bytes of UTF-8, got \(bytes)")
        case .conflictingMember(let member):
            return APIError(.conflict, code: "conflicting_member", message: "The set holds \(member), which the addition was to be refused for; nothing was changed.",
                            headers: headers, extraJSON: ",\"conflicting_member\":\(JSONText.quote(member))")
        }
    }

    static func unavailableError(_ failure: LinearizableFailure, message: String) -> APIError {
        var headers = HTTPFields()
        headers[.retryAfter] = "1"
        let code = switch failure {
        case .noQuorum: "no_quorum"
        case .outcomeUnknown: "outcome_unknown"
        case .partitionMoving: "partition_moving"
        case .notReady: "cluster_not_formed"
        }
        let sentence = message.first.map { $0.uppercased() + message.dropFirst() } ?? message
        let ending = failure.isNotApplied ? " Nothing was applied; retry." : ""
        let outcome = failure.isNotApplied ? "not_applied" : "unknown"
        return APIError(.serviceUnavailable, code: code, message: sentence + (sentence.hasSuffix(".") ? "" : ".") + ending, headers: headers,
                        extraJSON: ",\"outcome\":\"\(outcome)\"")
    }

    /// `{"value": n}` for a counter, `{"members": [...], "count": n}` for a set.
    static func valueJSON(_ value: LinearizableValue) -> String {
        switch value.content {
        case .counter(let number): return "{\"value\":\(number)}"
        case .set(let members): return "{\"members\":[\(members.map(JSONText.quote).joined(separator: ","))],\"count\":\(members.count)}"
        case .bytes(_, let data): return "{\"bytes\":\(data.count)}"
        case .deleted: return "{\"deleted\":true}"
        }
    }

    static func describe(_ value: LinearizableValue, in headers: inout HTTPFields) {
        headers[.eTag] = etag(value)
        if let kind = value.content.kind { headers[kindHeader] = name(of: kind) }
    }

    static func name(of kind: LinearizableKind) -> String {
        switch kind {
        case .bytes: "bytes"
        case .counter: "counter"
        case .set: "set"
        }
    }
}

extension APIError {
    static func notLinearizable(_ table: String) -> APIError {
        APIError(.badRequest, code: "not_linearizable", message: "Table '\(table)' is eventual; counter and set operations need a table created with \"consistency\": \"linearizable\".")
    }
}
