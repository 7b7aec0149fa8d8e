import Foundation
import Logging
import NIOCore
import RingstoreRPC
import RingstoreCore
import RingstoreStorage
import Synchronization

/// Message types of the catalogue, which travel beside the data path's.
enum CatalogMessage {
    /// Body: the sender's tables as JSON; reply (`catalogReply`): the receiver's.
    static let exchange: UInt16 = 50
    /// Body: a table name that was dropped.
    static let drop: UInt16 = 51
    static let reply: UInt16 = 150
}

/// Answers other nodes' RPCs: data-path messages go to the `ClusterNode` on the
/// event loop (no Task), catalogue messages to the table catalogue.
struct PeerRPCHandler: RPCHandler {
    let node: ClusterNode
    let catalog: TableCatalog
    let service: ClusterKeyValueService
    let linearizable: LinearizableEngine
    let antiEntropy: AntiEntropy
    let logger: Logger
    /// Set when the node belongs to a ring-server cluster: answers the ring servers' messages.
    let membership: MembershipAgent?

    func receive(_ request: RPCMessage, context: RPCRequestContext) -> RPCDispatch {
        if MembershipWire.ringServerTypes.contains(request.messageType) {
            guard let membership else {
                return .fail(RPCRemoteError(code: RPCRemoteError.unsupportedMessageTypeCode, message: "this node was started with --peers, not --join; it takes no ring server messages"))
            }
            return membership.receive(request)
        }
        if request.messageType == CatalogMessage.exchange || request.messageType == CatalogMessage.drop
            || request.messageType == PartitionPages.request
            || request.messageType == AntiEntropyWire.request || request.messageType == AntiEntropyWire.repairNow
            || request.messageType == TombstonePurge.check || request.messageType == TombstonePurge.purge
            || request.messageType == NodeStatsWire.request {
            return .detach
        }
        if request.messageType == LinearizableRequest.type {
            return linearizableRequest(request, context: context)
        }
        if request.messageType == CASPaxosPeek.requestType {
            return peekRequest(request, context: context)
        }
        if request.messageType == CASPaxosPeek.manyRequestType {
            return peekManyRequest(request, context: context)
        }
        if CASPaxosMessage.typeRange.contains(request.messageType) {
            return acceptorRequest(request, context: context)
        }
        let decoded: PeerRequest
        do {
            decoded = try PeerCodec.decodeRequest(type: request.messageType, body: Array(request.body.readableBytesView))
        } catch {
            return .fail(RPCRemoteError(code: 1, message: "undecodable request: \(error.reason)"))
        }
        if case .ping(let from) = decoded {
            if let from { node.pinged(by: from) }
            let (type, body) = PeerCodec.encode(PeerReply.pong)
            return .reply(RPCMessage(messageType: type, body: ByteBuffer(bytes: body)))
        }
        return .later(node.receive(decoded, eventLoop: context.eventLoop))
    }

    /// A proposer's prepare or accept, answered on the connection's event loop once
    /// the acceptor's decision is durable; an acceptor that cannot store its state
    /// fails the call, which the proposer counts as no answer.
    private func acceptorRequest(_ request: RPCMessage, context: RPCRequestContext) -> RPCDispatch {
        let decoded: CASPaxosRequest
        do {
            decoded = try CASPaxosRequest.decode(type: request.messageType, body: Array(request.body.readableBytesView))
        } catch {
            return .fail(RPCRemoteError(code: 1, message: "undecodable CASPaxos request: \(error.reason)"))
        }
        let promise = context.eventLoop.makePromise(of: RPCMessage.self)
        linearizable.handle(decoded) { reply in
            guard let reply else {
                return promise.fail(RPCRemoteError(code: 2, message: "the acceptor could not store its state"))
            }
            let (type, body) = reply.encode()
            promise.succeed(RPCMessage(messageType: type, body: ByteBuffer(bytes: body)))
        }
        return .later(promise.futureResult)
    }

    /// A linearizable operation this node proposes (as the key's leader), answered on
    /// the connection's event loop when the engine's callback comes.
    private func linearizableRequest(_ request: RPCMessage, context: RPCRequestContext) -> RPCDispatch {
        let decoded: LinearizableRequest
        do {
            decoded = try LinearizableRequest(decoding: Array(request.body.readableBytesView))
        } catch {
            return .fail(RPCRemoteError(code: 1, message: "undecodable linearizable request: \(error.reason)"))
        }
        let promise = context.eventLoop.makePromise(of: RPCMessage.self)
        linearizable.run(decoded) { answer in
            promise.succeed(RPCMessage(messageType: LinearizableRequest.replyType, body: ByteBuffer(bytes: answer.encode())))
        }
        return .later(promise.futureResult)
    }

    /// A peek at this node's acceptor for a key: what it accepted, or a refusal.
    private func peekRequest(_ request: RPCMessage, context: RPCRequestContext) -> RPCDispatch {
        let key: ItemKey
        let placement: CASPaxosPlacement
        do {
            (key, placement) = try CASPaxosPeek.decodeRequest(Array(request.body.readableBytesView))
        } catch {
            return .fail(RPCRemoteError(code: 1, message: "undecodable peek: \(error.reason)"))
        }
        let promise = context.eventLoop.makePromise(of: RPCMessage.self)
        linearizable.handlePeek(key, placement: placement) { answer in
            guard case .some(let accepted) = answer else {
                return promise.fail(RPCRemoteError(code: 2, message: "this node does not place the key as the asker does"))
            }
            promise.succeed(RPCMessage(messageType: CASPaxosPeek.replyType, body: ByteBuffer(bytes: CASPaxosPeek.encodeReply(key, accepted: accepted))))
        }
        return .later(promise.futureResult)
    }

    /// A look at many keys' acceptors at once; each key answers on its own (refused,
    /// nothing accepted, or the accepted value).
    private func peekManyRequest(_ request: RPCMessage, context: RPCRequestContext) -> RPCDispatch {
        let keys: [(ItemKey, CASPaxosPlacement)]
        do {
            keys = try CASPaxosPeek.decodeManyRequest(Array(request.body.readableBytesView))
        } catch {
            return .fail(RPCRemoteError(code: 1, message: "undecodable look: \(error.reason)"))
        }
        let promise = context.eventLoop.makePromise(of: RPCMessage.self)
        let gathered = ManyPeeks(count: keys.count) { answers in
            promise.succeed(RPCMessage(messageType: CASPaxosPeek.manyReplyType, body: ByteBuffer(bytes: CASPaxosPeek.encodeManyReply(answers))))
        }
        for (index, (key, placement)) in keys.enumerated() {
            linearizable.handlePeek(key, placement: placement) { answer in gathered.set(index, answer.map { $0.map(CASPaxosAcceptedCount.init) }) }
        }
        return .later(promise.futureResult)
    }

    func handle(_ request: RPCMessage, context: RPCRequestContext) async throws -> RPCMessage {
        switch request.messageType {
        case NodeStatsWire.request:
            let hints = node.membership.hints
            let json = "{\"keys\":\(node.storage.statistics.keys),\"hints\":\(hints),\"operations\":\(node.operationsServed.load(ordering: .relaxed))}"
            return RPCMessage(messageType: NodeStatsWire.reply, body: ByteBuffer(string: json))
        case AntiEntropyWire.request:
            do {
                return try antiEntropy.answer(request)
            } catch let error as DecodeError {
                throw RPCRemoteError(code: 1, message: "undecodable anti-entropy request: \(error.reason)")
            }
        case TombstonePurge.check, TombstonePurge.purge:
            do {
                return request.messageType == TombstonePurge.check ? try antiEntropy.answerCheck(request) : try await antiEntropy.answerPurge(request)
            } catch let error as DecodeError {
                throw RPCRemoteError(code: 1, message: "undecodable tombstone purge request: \(error.reason)")
            }
        case AntiEntropyWire.repairNow:
            let tally = try await antiEntropy.round(pausing: false)
            return RPCMessage(messageType: AntiEntropyWire.repairReply, body: ByteBuffer(string: tally.json))
        case PartitionPages.request:
            do {
                let pendingEpoch = node.engine.withLock { $0.pendingRing?.epoch }
                return try PartitionPages.answer(request, storage: node.storage, partitioning: node.partitioning, pendingEpoch: pendingEpoch)
            } catch let error as DecodeError {
                throw RPCRemoteError(code: 1, message: "undecodable partition page request: \(error.reason)")
            }
        case CatalogMessage.exchange:
            let tables = try JSONDecoder().decode([TableDefinition].self, from: Data(request.body.readableBytesView))
            try await catalog.adopt(tables)
            return RPCMessage(messageType: CatalogMessage.reply, body: ByteBuffer(bytes: try catalog.encoded()))
        case CatalogMessage.drop:
            let name = String(decoding: request.body.readableBytesView, as: UTF8.self)
            if (try? await catalog.remove(name: name)) != nil {
                try await service.removeAllKeys(of: name)
                logger.info("dropped a table at a peer's request", metadata: ["table": "\(name)"])
            }
            return RPCMessage(messageType: CatalogMessage.reply, body: ByteBuffer())
        default:
            throw RPCRemoteError(code: RPCRemoteError.unsupportedMessageTypeCode, message: "message type \(request.messageType) is not handled")
        }
    }
}

/// The answers of a look at many keys, delivered once all are in.
final class ManyPeeks: Sendable {
    private let answers: Mutex<(values: [CASPaxosAcceptedCount??], missing: Int)>
    private let done: @Sendable ([CASPaxosAcceptedCount??]) -> Void

    init(count: Int, done: @escaping @Sendable ([CASPaxosAcceptedCount??]) -> Void) {
        answers = Mutex((Array(repeating: .none, count: count), count))
        self.done = done
        if count == 0 { done([]) }
    }

    func set(_ index: Int, _ answer: CASPaxosAcceptedCount??) {
        let complete: [CASPaxosAcceptedCount??]? = answers.withLock { state in
            state.values[index] = answer
            state.missing -= 1
            return state.missing == 0 ? state.values : nil
        }
        if let complete { done(complete) }
    }
}
