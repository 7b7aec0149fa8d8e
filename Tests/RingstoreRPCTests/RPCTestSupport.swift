import NIOCore
import RingstoreRPC
import Synchronization

/// A one-shot latch: tasks wait until the test opens it.
final class RPCTestGate: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func wait() async {
        await withCheckedContinuation { continuation in
            let resumeNow = state.withLock { state -> Bool in
                if state.open { return true }
                state.waiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    func open() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.open = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }
}

/// Counts events across threads.
final class RPCTestCounter: Sendable {
    private let value = Mutex(0)

    @discardableResult
    func increment() -> Int { value.withLock { $0 += 1; return $0 } }
    var count: Int { value.withLock { $0 } }
}

/// Message types of the test protocol.
enum RPCTestMessage {
    /// Echoed on the event loop.
    static let echo: UInt16 = 1
    /// Echoed from a Task.
    static let echoInTask: UInt16 = 2
    /// Echoed from a Task once the handler's gate opens.
    static let gated: UInt16 = 3
    /// Fails with code 42 on the event loop.
    static let fail: UInt16 = 4
    /// Throws code 43 from a Task.
    static let throwInTask: UInt16 = 5
    /// Throws an error that is not an `RPCRemoteError`.
    static let throwPlain: UInt16 = 6
}

struct RPCTestPlainError: Error {}

/// The test protocol's server side (see `RPCTestMessage`).
struct RPCTestHandler: RPCHandler {
    let gate: RPCTestGate
    let started: RPCTestCounter

    init(gate: RPCTestGate = RPCTestGate(), started: RPCTestCounter = RPCTestCounter()) {
        self.gate = gate
        self.started = started
    }

    func receive(_ request: RPCMessage, context: RPCRequestContext) -> RPCDispatch {
        switch request.messageType {
        case RPCTestMessage.echo: .reply(request)
        case RPCTestMessage.fail: .fail(RPCRemoteError(code: 42, message: "refused"))
        default: .detach
        }
    }

    func handle(_ request: RPCMessage, context: RPCRequestContext) async throws -> RPCMessage {
        switch request.messageType {
        case RPCTestMessage.echoInTask:
            return request
        case RPCTestMessage.gated:
            started.increment()
            await gate.wait()
            return request
        case RPCTestMessage.throwInTask:
            throw RPCRemoteError(code: 43, message: "thrown")
        case RPCTestMessage.throwPlain:
            throw RPCTestPlainError()
        default:
            throw RPCRemoteError(code: RPCRemoteError.unsupportedMessageTypeCode, message: "unknown \(request.messageType)")
        }
    }
}

/// A deterministic generator for jitter and fuzz tests (SplitMix64).
struct RPCTestGenerator: RandomNumberGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}

/// Encodes frames to bytes, as a peer would send them.
func rpcTestBytes(_ frames: [RPCFrame]) -> ByteBuffer {
    var buffer = ByteBuffer()
    for frame in frames { frame.write(into: &buffer) }
    return buffer
}

func rpcTestMessage(_ messageType: UInt16, _ text: String) -> RPCMessage {
    RPCMessage(messageType: messageType, body: ByteBuffer(string: text))
}
