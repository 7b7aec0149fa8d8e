import NIOCore
import NIOEmbedded
import RingstoreRPC
import Testing

@Suite("RPC frame codec")
struct RPCFrameTests {
    private func codecChannel(frameBytesMax: Int = RPCLimits.frameBytesMax) -> EmbeddedChannel {
        EmbeddedChannel(handlers: [
            ByteToMessageHandler(RPCFrameDecoder(frameBytesMax: frameBytesMax)),
            MessageToByteHandler(RPCFrameEncoder()),
        ])
    }

    private let sampleFrames = [
        RPCFrame(requestID: 1, kind: .request, messageType: 7, body: ByteBuffer(string: "hello")),
        RPCFrame(requestID: .max, kind: .response, messageType: .max, body: ByteBuffer()),
        RPCFrame(requestID: 0x0102_0304_0506_0708, kind: .errorResponse, messageType: 0xFFFE, body: ByteBuffer(repeating: 0xAB, count: 4000)),
    ]

    @Test func encodedFramesDecodeToTheSameFrames() throws {
        // Proves encode then decode through the channel handlers is the identity, for every kind and edge values.
        let channel = codecChannel()
        for frame in sampleFrames {
            try channel.writeOutbound(frame)
            let bytes = try #require(try channel.readOutbound(as: ByteBuffer.self))
            #expect(bytes.readableBytes == RPCLimits.headerBytes + frame.body.readableBytes)
            try channel.writeInbound(bytes)
            #expect(try channel.readInbound(as: RPCFrame.self) == frame)
        }
        #expect(try channel.finish().isClean)
    }

    @Test func wireLayoutIsBigEndianLengthIdKindTypeBody() throws {
        // Proves the byte layout other languages must speak: length, id, kind, type, body.
        var buffer = ByteBuffer()
        RPCFrame(requestID: 0x0102, kind: .response, messageType: 0x0A0B, body: ByteBuffer(bytes: [0xEE])).write(into: &buffer)
        #expect(Array(buffer.readableBytesView) == [0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 1, 2, 1, 0x0A, 0x0B, 0xEE])
    }

    @Test func frameSplitIntoSingleBytesDecodesOnceComplete() throws {
        // Proves a partial frame waits for more bytes and decodes exactly once when the last byte arrives.
        let channel = codecChannel()
        let bytes = rpcTestBytes([sampleFrames[0]])
        for (index, byte) in bytes.readableBytesView.enumerated() {
            try channel.writeInbound(ByteBuffer(bytes: [byte]))
            let decoded = try channel.readInbound(as: RPCFrame.self)
            if index < bytes.readableBytes - 1 {
                #expect(decoded == nil)
            } else {
                #expect(decoded == sampleFrames[0])
            }
        }
        #expect(try channel.finish().isClean)
    }

    @Test func severalFramesInOneReadAllDecodeInOrder() throws {
        // Proves one read holding several frames (and the start of another) yields each whole frame in order.
        let channel = codecChannel()
        let bytes = rpcTestBytes(sampleFrames + [sampleFrames[0]])
        let cut = bytes.readableBytes - 3
        try channel.writeInbound(bytes.getSlice(at: bytes.readerIndex, length: cut)!)
        for frame in sampleFrames {
            #expect(try channel.readInbound(as: RPCFrame.self) == frame)
        }
        #expect(try channel.readInbound(as: RPCFrame.self) == nil)
        try channel.writeInbound(bytes.getSlice(at: bytes.readerIndex + cut, length: 3)!)
        #expect(try channel.readInbound(as: RPCFrame.self) == sampleFrames[0])
        #expect(try channel.finish().isClean)
    }

    @Test func lengthOverTheLimitIsRefusedBeforeTheBodyArrives() throws {
        // Proves a frame length over the maximum fails at once with frameTooLarge, without waiting for the body.
        let channel = codecChannel(frameBytesMax: 100)
        var header = ByteBuffer()
        header.writeInteger(UInt32(101))
        #expect(throws: RPCError.frameTooLarge(bytes: 101, max: 100)) { try channel.writeInbound(header) }
        _ = try? channel.finish()
    }

    @Test func defaultLimitRefusesAnEightyOneMebibyteFrame() throws {
        // Proves the production limit is 80 MiB and a larger length is refused.
        #expect(RPCLimits.frameBytesMax == 80 << 20)
        var header = ByteBuffer()
        header.writeInteger(UInt32((80 << 20) + 1))
        #expect(throws: RPCError.frameTooLarge(bytes: (80 << 20) + 1, max: 80 << 20)) {
            _ = try RPCFrameDecoder.decodeFrame(from: &header)
        }
    }

    @Test func tooShortLengthAndUnknownKindAreMalformed() throws {
        // Proves lengths that cannot hold a header and unknown kinds are refused as malformed.
        var short = ByteBuffer()
        short.writeInteger(UInt32(5))
        short.writeBytes([0, 0, 0, 0, 0])
        #expect(throws: RPCError.self) { _ = try RPCFrameDecoder.decodeFrame(from: &short) }

        var unknownKind = rpcTestBytes([sampleFrames[0]])
        unknownKind.setInteger(UInt8(9), at: 12)
        #expect(throws: RPCError.malformedFrame("unknown frame kind 9")) { _ = try RPCFrameDecoder.decodeFrame(from: &unknownKind) }
    }

    @Test func tooLargeFrameClosesAServerConnection() throws {
        // Proves the server's connection handler closes the connection when the decoder refuses a frame.
        let channel = EmbeddedChannel(handler: RPCServerConnectionHandler(handler: RPCTestHandler(), frameBytesMax: 64))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()
        #expect(channel.isActive)
        var header = ByteBuffer()
        header.writeInteger(UInt32(65))
        try channel.writeInbound(header)
        #expect(!channel.isActive)
    }

    @Test func randomBytesNeverCrashTheDecoder() throws {
        // Proves arbitrary input yields frames or an RPCError, never a trap, over 500 seeded random streams.
        var generator = RPCTestGenerator(state: 20_240_501)
        var framesSeen = 0
        var errorsSeen = 0
        for _ in 0..<500 {
            var stream = ByteBuffer()
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                // Plausible headers (small lengths, kinds 0...3) reach deeper than uniform noise.
                let bodyBytes = Int.random(in: 0...40, using: &generator)
                let declared = Int.random(in: 0...1, using: &generator) == 0 ? 11 + bodyBytes : Int.random(in: 0...80, using: &generator)
                stream.writeInteger(UInt32(declared))
                stream.writeInteger(UInt64.random(in: 0...UInt64.max, using: &generator))
                stream.writeInteger(UInt8.random(in: 0...3, using: &generator))
                stream.writeInteger(UInt16.random(in: 0...UInt16.max, using: &generator))
                stream.writeBytes((0..<bodyBytes).map { _ in UInt8.random(in: 0...255, using: &generator) })
            }
            var decoder = stream
            do {
                while let frame = try RPCFrameDecoder.decodeFrame(from: &decoder, frameBytesMax: 64) {
                    #expect(frame.body.readableBytes <= 64 - RPCLimits.headerBytesAfterLength)
                    framesSeen += 1
                }
            } catch is RPCError {
                errorsSeen += 1
            }
        }
        #expect(framesSeen > 0 && errorsSeen > 0)
    }
}
