import Foundation
import Hummingbird
import HTTPTypes
import NIOCore
import RingstoreCore

/// The keys of linearizable tables over HTTP: reads and writes with `ETag`,
/// `If-Match` and `If-None-Match`, and the counter and set operations under `POST`.
extension NodeHTTPAPI {
    static let kindHeader = HTTPField.Name("X-Ringstore-Kind")!

    /// The operations `POST /v1/kv/{table}/{key}/{operation}` takes.
    static let linearizableOperations = ["add", "set-add", "set-remove"]

    func linearizableKeyValue(_ request: Request, table: TableDefinition, rawKey: String) async throws -> Response {
        let key = try Self.decodeKey(rawKey)
        try Self.refuseEventualParameters(request)
        switch request.method {
        case .get, .head:
            guard case .none = try Self.precondition(from: request) else {
                throw APIError(.badRequest, code: "invalid_precondition", message: "If-Match and If-None-Match apply to PUT and DELETE; a read always returns the current value and its ETag.")
            }
            let answer = try await linearizable.run(table: table, key: key, change: .read)
            let response = try Self.readResponse(answer, table: table.name)
            return request.method == .head ? Response(status: response.status, headers: response.headers) : response
        case .put:
            let precondition = try Self.precondition(from: request)
            var request = request
            let value = try await collectValue(&request)
            let contentType = request.headers[.contentType] ?? Self.defaultContentType
            do { try Validation.checkContentType(contentType) } catch { throw APIError(error) }
            let answer = try await linearizable.run(table: table, key: key, change: .put(contentType: contentType, data: value, precondition: precondition))
            return try Self.writeResponse(answer)
        case .delete:
            let precondition = try Self.precondition(from: request)
            let answer = try await linearizable.run(table: table, key: key, change: .delete(precondition: precondition))
            return try Self.writeResponse(answer)
        default:
            throw APIError.internalError("internal inconsistency in routing: \(request.method) reached the linearizable handler")
        }
    }

    func linearizableOperation(_ request: Request, table: TableDefinition, rawKey: String, operation: String) async throws -> Response {
        guard Self.linearizableOperations.contains(operation) else {
            throw APIError(.badRequest, code: "unknown_operation", message: "'\(operation)' is not an operation on a key; POST /v1/kv/{table}/{key}/ takes one of: \(Self.linearizableOperations.joined(separator: ", ")).")
        }
        let key = try Self.decodeKey(rawKey)
        try Self.refuseEventualParameters(request)
        if request.headers[.ifMatch] != nil || request.headers[.ifNoneMatch] != nil {
            throw APIError(.badRequest, code: "invalid_precondition", message: "If-Match and If-None-Match apply to PUT and DELETE; '\(operation)' checks its own bounds.")
        }
        let change: LinearizableChange
        switch operation {
        case "add":
            guard let delta = try Self.int64Parameter("delta", request) else {
                throw Self.invalidParameter("delta is required: the amount to add, a whole number (negative to subtract)")
            }
            let min = try Self.int64Parameter("min", request) ?? .min
            let max = try Self.int64Parameter("max", request) ?? .max
            guard min <= max else { throw Self.invalidParameter("min=\(min) is above max=\(max)") }
            change = .counterAdd(delta: delta, min: min, max: max)
        case "set-add":
            let member = try Self.memberParameter(request)
            var cap = CASPaxosLimits.setMembersMax
            if let text = request.uri.queryParameters["cap"] {
                guard let value = Int(text), (1...CASPaxosLimits.setMembersMax).contains(value) else {
                    throw Self.invalidParameter("cap=\(text) must be a whole number from 1 to \(CASPaxosLimits.setMembersMax)")
                }
                cap = value
            }
            change = .setAdd(member: member, cap: cap)
        default:
            change = .setRemove(member: try Self.memberParameter(request))
        }
        let answer = try await linearizable.run(table: table, key: key, change: change)
        guard case .applied(let value) = answer else { return try Self.writeResponse(answer) }
        guard let value, value.exists else {
            // Removing from an absent (or deleted) key leaves it absent: an empty set.
            var response = Self.jsonResponse(.ok, "{\"members\":[],\"count\":0}")
            if let value { response.headers[.eTag] = Self.etag(value) }
            response.headers[Self.kindHeader] = Self.name(of: .set)
            return response
        }
        var response = Self.jsonResponse(.ok, Self.valueJSON(value))
        Self.describe(value, in: &response.headers)
        return response
    }

    // MARK: Parsing

    /// Linearizable keys have no per-request quorums and no contexts: every operation
    /// uses a majority, and versions are ETags.
    static func refuseEventualParameters(_ request: Request) throws(APIError) {
        for name in ["r", "w"] where request.uri.queryParameters[Substring(name)] != nil {
            throw APIError(.badRequest, code: "not_applicable", message: "\(name) does not apply to a linearizable table: every operation uses a majority of the key's replicas.")
        }
        if request.headers[contextHeader] != nil {
            throw APIError(.badRequest, code: "not_applicable", message: "A linearizable table has no contexts; use the ETag with If-Match to write only over what you read.")
        }
    }

    /// The precondition of `If-Match` (`"<version>"` or `*`) or `If-None-Match: *`.
    static func precondition(from request: Request) throws(APIError) -> LinearizablePrecondition {
        let ifMatch = request.headers[.ifMatch]
        let ifNoneMatch = request.headers[.ifNoneMatch]
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

    static func int64Parameter(_ name: String, _ request: Request) throws(APIError) -> Int64? {
        guard let text = request.uri.queryParameters[Substring(name)] else { return nil }
        guard let value = Int64(text) else { throw invalidParameter("\(name)=\(text) is not a whole number from \(Int64.min) to \(Int64.max)") }
        return value
    }

    static func memberParameter(_ request: Request) throws(APIError) -> String {
        // Query values arrive percent-decoded.
        guard let raw = request.uri.queryParameters["member"] else {
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
    static func readResponse(_ answer: LinearizableAnswer, table: String) throws -> Response {
        guard case .applied(let found) = answer else { return try writeResponse(answer) }
        guard let value = found, value.exists else {
            throw APIError(.notFound, code: "key_not_found", message: "The key has no value in table '\(table)'.")
        }
        var response: Response
        if case .bytes(let contentType, let data) = value.content {
            var headers = HTTPFields()
            headers[.contentType] = contentType
            response = Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
        } else {
            response = jsonResponse(.ok, valueJSON(value))
        }
        describe(value, in: &response.headers)
        return response
    }

    /// A put or delete (or the refusal and failure of any change): 204 with the new ETag,
    /// 412 or 409 with the current value, or 503.
    static func writeResponse(_ answer: LinearizableAnswer) throws -> Response {
        switch answer {
        case .applied(let value):
            var response = Response(status: .noContent)
            if let value { response.headers[.eTag] = etag(value) }
            return response
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
