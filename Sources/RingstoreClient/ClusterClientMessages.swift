import Foundation
import NIOCore
import RingstoreCore
import RingstoreRPC

/// Checks of a request's input before anything is sent, with the same status, code
/// and message the HTTP API gives for the same input, so both paths fail alike and a
/// refused request changes nothing.
enum ClientInput {
    /// What a node stores when a put names no content type (as over HTTP).
    static let defaultContentType = "application/octet-stream"

    static func checkedKey(_ key: String) throws(RingstoreError) -> [UInt8] {
        let bytes = Array(key.utf8)
        do { try Validation.checkKey(bytes) } catch { throw refused(error) }
        return bytes
    }

    /// Refuses values no node can take (`Limits.valueBytesMaxCeiling`); a node's own,
    /// lower limit is applied by the node on the HTTP path.
    static func checkValue(byteCount: Int) throws(RingstoreError) {
        do { try Validation.checkValue(byteCount: byteCount, max: Limits.valueBytesMaxCeiling) } catch { throw refused(error) }
    }

    static func checkContentType(_ contentType: String) throws(RingstoreError) {
        do { try Validation.checkContentType(contentType) } catch { throw refused(error) }
    }

    /// A quorum override checked against the table's N (nil when there is none).
    static func quorum(_ name: String, _ value: Int?, n: Int) throws(RingstoreError) -> Int? {
        guard let value else { return nil }
        guard (1...n).contains(value) else {
            throw RingstoreError(
                status: 400, code: "invalid_quorum",
                message: "\(name)=\(value) is not a quorum for this table; use a number from 1 to \(n).")
        }
        return value
    }

    /// The version vector behind an `X-Ringstore-Context` string; nil for none or "".
    static func decodeContext(_ text: String?) throws(RingstoreError) -> VersionVector? {
        guard let text, !text.isEmpty else { return nil }
        guard let data = Data(base64Encoded: text) else { throw invalidContext("not base64") }
        do { return try VersionVector(decoding: Array(data)) } catch { throw invalidContext(error.reason) }
    }

    static func encodeContext(_ context: VersionVector) -> String {
        Data(context.encode()).base64EncodedString()
    }

    private static func invalidContext(_ reason: String) -> RingstoreError {
        RingstoreError(
            status: 400, code: "invalid_context",
            message: "The X-Ringstore-Context header is not a context this cluster issued (\(reason)); send back the header of a read, or none.")
    }

    private static func refused(_ error: InputError) -> RingstoreError {
        if case .valueTooLarge = error { return RingstoreError(status: 413, code: error.code, message: error.message) }
        return RingstoreError(status: 400, code: error.code, message: error.message)
    }
}

/// Turns a node's replies into the client's outcomes and errors, as the HTTP API would.
enum ClientReplies {
    enum Decoded {
        /// The node ran the request (or refused it for a reason another node would share).
        case result(ClientResult)
        /// The node did not run the request: it cannot coordinate the key, or is stopping.
        case notCoordinated
        case undecodable(String)
    }

    static func decode(_ reply: RPCMessage) -> Decoded {
        let decoded: PeerReply
        do {
            decoded = try PeerCodec.decodeReply(type: reply.messageType, body: Array(reply.body.readableBytesView))
        } catch {
            return .undecodable(error.reason)
        }
        switch decoded {
        case .coordinated(.failed(.unavailable)), .failed(.unavailable): return .notCoordinated
        case .coordinated(let result): return .result(result)
        case .failed(let failure): return .result(.failed(failure))
        case .replicaRead, .replicaWritten, .pong: return .undecodable("a \(decoded) reply to a client request")
        }
    }

    static func readOutcome(_ result: ClientResult) throws(RingstoreError) -> ReadOutcome {
        switch result {
        case .found(let object):
            let context = ClientInput.encodeContext(object.context)
            let siblings = object.values
            if siblings.count == 1, let only = siblings.first, !only.isTombstone {
                return .value(data: only.data, contentType: only.contentType, context: context)
            }
            return .siblings(siblings.map(SiblingValue.init), context: context)
        case .notFound(let context):
            return .notFound(context: context.map(ClientInput.encodeContext))
        case .failed(let failure):
            throw error(failure)
        case .written:
            throw RingstoreError(status: 500, code: "internal_error", message: "internal inconsistency: a read was answered as a write")
        }
    }

    static func writtenContext(_ result: ClientResult) throws(RingstoreError) -> String {
        switch result {
        case .written(let context): return ClientInput.encodeContext(context)
        case .failed(let failure): throw error(failure)
        case .found, .notFound:
            throw RingstoreError(status: 500, code: "internal_error", message: "internal inconsistency: a write was answered as a read")
        }
    }

    /// The HTTP API's error for a failed client operation.
    static func error(_ failure: ClientFailure) -> RingstoreError {
        switch failure {
        case .insufficientReplicas(let have, let need):
            RingstoreError(
                status: 503, code: "insufficient_replicas",
                message: "Only \(have) of the \(need) replicas the request needs answered in time; nothing is guaranteed about a write that failed this way. Retry, or lower r/w.")
        case .tooManySiblings(let count, let max):
            RingstoreError(
                status: 409, code: "too_many_siblings",
                message: "This write would leave \(count) concurrent versions of the key; at most \(max) are kept. Read the key and write with its context to resolve them.")
        case .diskFull:
            RingstoreError(status: 507, code: "disk_full", message: "A replica's disk is full; retry once space is freed.")
        case .storage(let reason):
            RingstoreError(status: 500, code: "storage_error", message: "A replica's storage failed: \(reason).")
        case .unavailable(let reason):
            RingstoreError(status: 503, code: "unavailable", message: "No replica could take the request: \(reason).")
        }
    }
}

extension SiblingValue {
    /// The HTTP API's JSON form of a sibling (base64 value, `deleted` for a tombstone).
    init(_ sibling: Sibling) {
        self.init(
            contentType: sibling.contentType, valueBase64: Data(sibling.data).base64EncodedString(), deleted: sibling.isTombstone)
    }
}
