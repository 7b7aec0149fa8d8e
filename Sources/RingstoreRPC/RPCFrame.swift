public import NIOCore

/// Bounds of the node-to-node transport, named with the unit last.
public enum RPCLimits {
    /// The largest frame (everything after the length field) a peer may send. Values
    /// travel in one frame (at most `Limits.valueBytesMaxCeiling`, 64 MiB) with their
    /// key and versions; 80 MiB leaves room for those and refuses anything absurd
    /// before it is buffered.
    public static let frameBytesMax = 80 << 20
    /// Bytes of a frame's header after the length: request id, kind, message type.
    public static let headerBytesAfterLength = 8 + 1 + 2
    /// Bytes of a whole frame header, the length field included.
    public static let headerBytes = 4 + headerBytesAfterLength
    /// Calls one client connection may have outstanding before new calls fail fast.
    public static let inFlightMaxDefault = 1024
    /// Requests one server connection works on at once before it stops reading.
    public static let serverInFlightMaxDefault = 1024
    /// Bytes of an error response's message; longer messages are cut.
    public static let errorMessageBytesMax = 4 << 10
}

/// One typed payload: what a request carries and what a reply carries.
///
/// The transport never looks inside `body`; `messageType` tells the handler (and
/// the caller, for a reply) how to decode it. A received body is a slice of the
/// connection's read buffer: code that keeps it for long SHOULD copy it, or it keeps
/// the whole read buffer alive.
public struct RPCMessage: Sendable, Equatable {
    /// Which message this is; the meaning belongs to the protocol above the transport.
    public var messageType: UInt16
    /// The encoded message.
    public var body: ByteBuffer

    /// Creates a message of the given type.
    public init(messageType: UInt16, body: ByteBuffer) {
        self.messageType = messageType
        self.body = body
    }
}

/// One frame on the wire:
///
/// ```
/// UInt32 length of everything after it | UInt64 request id | UInt8 kind | UInt16 message type | body
/// ```
/// All integers are big-endian. For an error response the message-type field carries
/// the error code and the body the UTF-8 error message.
public struct RPCFrame: Sendable, Equatable {
    /// What a frame is for.
    public enum Kind: UInt8, Sendable, Equatable {
        /// A call; the peer answers with `response` or `errorResponse` carrying the same id.
        case request = 0
        /// A successful reply.
        case response = 1
        /// A failed reply: message type is the error code, body the message.
        case errorResponse = 2
    }

    /// Chosen by the caller, unique on its connection; a reply carries its request's id.
    public var requestID: UInt64
    public var kind: Kind
    public var messageType: UInt16
    public var body: ByteBuffer

    /// Creates a frame.
    public init(requestID: UInt64, kind: Kind, messageType: UInt16, body: ByteBuffer) {
        self.requestID = requestID
        self.kind = kind
        self.messageType = messageType
        self.body = body
    }

    /// The frame's message type and body as a message.
    public var message: RPCMessage {
        RPCMessage(messageType: messageType, body: body)
    }

    /// Appends the whole frame, length field included, to `buffer`.
    ///
    /// - Precondition: the frame fits in `RPCLimits.frameBytesMax`; callers check
    ///   sizes before they build frames.
    public func write(into buffer: inout ByteBuffer) {
        buffer.reserveCapacity(minimumWritableBytes: RPCLimits.headerBytes + body.readableBytes)
        writeHeader(into: &buffer)
        var body = body
        buffer.writeBuffer(&body)
    }

    /// Appends the header alone (length, id, kind, type); the body must follow.
    public func writeHeader(into buffer: inout ByteBuffer) {
        let lengthAfterField = RPCLimits.headerBytesAfterLength + body.readableBytes
        precondition(lengthAfterField <= RPCLimits.frameBytesMax, "RPC frame of \(lengthAfterField) bytes exceeds \(RPCLimits.frameBytesMax)")
        buffer.writeMultipleIntegers(UInt32(lengthAfterField), requestID, kind.rawValue, messageType)
    }
}

/// Frames waiting to be written by a connection handler. Small frames are copied into
/// one buffer, so a burst of replies costs one pipeline write and one system call;
/// a large body is written as its own buffer rather than copied.
///
/// Isolation: owned by one handler, used on its event loop.
struct RPCOutboundFrames {
    /// Bodies above this are written separately instead of copied into the batch.
    static let coalesceBodyBytesMax = 16 << 10
    private static let batchBytesInitial = 1 << 10

    private var batch: ByteBuffer?

    /// Adds a frame to the batch. Returns what must be written at once, in order: the
    /// batch so far and the frame itself when its body is too large to copy.
    ///
    /// Nothing here touches the pipeline: a write or flush can re-enter the handler
    /// (a failed flush closes the channel), so the handler writes outside any mutation
    /// of this value.
    mutating func append(_ frame: RPCFrame, allocator: ByteBufferAllocator) -> [ByteBuffer] {
        let bodyBytes = frame.body.readableBytes
        if bodyBytes > Self.coalesceBodyBytesMax {
            var header = allocator.buffer(capacity: RPCLimits.headerBytes)
            frame.writeHeader(into: &header)
            return (takeBatch().map { [$0] } ?? []) + [header, frame.body]
        }
        if batch == nil {
            batch = allocator.buffer(capacity: max(Self.batchBytesInitial, RPCLimits.headerBytes + bodyBytes))
        }
        frame.write(into: &batch!)
        return []
    }

    /// The frames batched so far, removed from the batch.
    mutating func takeBatch() -> ByteBuffer? {
        defer { batch = nil }
        return batch
    }

    /// Forgets frames not yet written (the connection is gone).
    mutating func discard() {
        batch = nil
    }
}

extension ChannelHandlerContext {
    /// Writes buffers taken from `RPCOutboundFrames`.
    func writeFrames(_ buffers: [ByteBuffer]) {
        for buffer in buffers { write(NIOAny(buffer), promise: nil) }
    }

    /// Writes a batch taken from `RPCOutboundFrames.takeBatch()` and flushes the
    /// channel. Take the batch first, in its own statement: a handler re-entered by the
    /// flush must find its `RPCOutboundFrames` free to change.
    func flushBatch(_ batch: ByteBuffer?) {
        if let batch { write(NIOAny(batch), promise: nil) }
        flush()
    }
}

/// Splits a byte stream into `RPCFrame`s.
///
/// A partial frame waits for more bytes. A length over `frameBytesMax`, a length too
/// short to hold the header, or an unknown kind throws `RPCError`: the stream cannot
/// be resynchronised, so the connection MUST be closed (the transport's connection
/// handlers do so). Bodies are slices of the read buffer, not copies.
///
/// Usable in a `ByteToMessageHandler`; the transport's own connection handlers run
/// it inline through a `NIOSingleStepByteToMessageProcessor`, which saves boxing
/// every frame in `NIOAny` between two handlers.
public struct RPCFrameDecoder: NIOSingleStepByteToMessageDecoder, Sendable {
    public typealias InboundOut = RPCFrame

    /// The largest frame accepted, counted after the length field.
    public let frameBytesMax: Int

    /// Creates a decoder that refuses frames over `frameBytesMax` bytes.
    public init(frameBytesMax: Int = RPCLimits.frameBytesMax) {
        precondition(frameBytesMax >= RPCLimits.headerBytesAfterLength, "frameBytesMax must hold a header")
        self.frameBytesMax = frameBytesMax
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> RPCFrame? {
        try Self.decodeFrame(from: &buffer, frameBytesMax: frameBytesMax)
    }

    /// Whole frames are still delivered at end of stream; a trailing partial frame is
    /// dropped, since a peer that closed mid-frame sent nothing usable.
    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> RPCFrame? {
        if let frame = try decode(buffer: &buffer) { return frame }
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return nil
    }

    /// Reads one frame from the front of `buffer`, or returns nil (consuming nothing)
    /// when the frame is not complete yet.
    public static func decodeFrame(from buffer: inout ByteBuffer, frameBytesMax: Int = RPCLimits.frameBytesMax) throws -> RPCFrame? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        let lengthAfterField = Int(length)
        guard lengthAfterField <= frameBytesMax else {
            throw RPCError.frameTooLarge(bytes: lengthAfterField, max: frameBytesMax)
        }
        guard lengthAfterField >= RPCLimits.headerBytesAfterLength else {
            throw RPCError.malformedFrame("length \(lengthAfterField) is shorter than the \(RPCLimits.headerBytesAfterLength)-byte header")
        }
        guard buffer.readableBytes >= 4 + lengthAfterField else { return nil }
        let kindByte = buffer.getInteger(at: buffer.readerIndex + 12, as: UInt8.self)!
        guard let kind = RPCFrame.Kind(rawValue: kindByte) else {
            throw RPCError.malformedFrame("unknown frame kind \(kindByte)")
        }
        let (_, requestID, _, messageType) = buffer.readMultipleIntegers(as: (UInt32, UInt64, UInt8, UInt16).self)!
        let body = buffer.readSlice(length: lengthAfterField - RPCLimits.headerBytesAfterLength)!
        return RPCFrame(requestID: requestID, kind: kind, messageType: messageType, body: body)
    }
}

/// Writes `RPCFrame`s as bytes (see `RPCFrame.write(into:)`).
public struct RPCFrameEncoder: MessageToByteEncoder, Sendable {
    public typealias OutboundIn = RPCFrame

    /// Creates an encoder.
    public init() {}

    public func encode(data: RPCFrame, out: inout ByteBuffer) throws {
        let lengthAfterField = RPCLimits.headerBytesAfterLength + data.body.readableBytes
        guard lengthAfterField <= RPCLimits.frameBytesMax else {
            throw RPCError.frameTooLarge(bytes: lengthAfterField, max: RPCLimits.frameBytesMax)
        }
        data.write(into: &out)
    }
}
