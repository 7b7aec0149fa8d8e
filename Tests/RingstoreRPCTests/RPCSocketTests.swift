import NIOCore
import NIOPosix
import RingstoreRPC
import Testing

/// Client and server on 127.0.0.1 over real sockets. Deadlines are generous: these
/// tests check behaviour on a shared, busy machine, not speed.
@Suite("RPC over sockets")
struct RPCSocketTests {
    private static let patience = TimeAmount.seconds(20)

    /// Runs `body` with a started server and a client for it, and tears all down.
    private func withServerAndClient(
        handler: any RPCHandler = RPCTestHandler(),
        serverConfiguration: RPCServerConfiguration = RPCServerConfiguration(),
        clientConfiguration: RPCClientConfiguration = RPCClientConfiguration(),
        _ body: (RPCServer, Int, RPCClient, any EventLoopGroup) async throws -> Void
    ) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let server = RPCServer(host: "127.0.0.1", port: 0, handler: handler, group: group, configuration: serverConfiguration)
        let port = try await server.start()
        let client = RPCClient(host: "127.0.0.1", port: port, group: group, configuration: clientConfiguration)
        do {
            try await body(server, port, client, group)
        } catch {
            await client.shutdown()
            await server.stop()
            try await group.shutdownGracefully()
            throw error
        }
        await client.shutdown()
        await server.stop()
        try await group.shutdownGracefully()
    }

    private func expectError(_ expected: RPCError, _ call: () async throws -> RPCMessage) async {
        do {
            let reply = try await call()
            Issue.record("expected \(expected), got reply \(reply)")
        } catch let error as RPCError {
            #expect(error == expected)
        } catch {
            Issue.record("expected \(expected), got \(error)")
        }
    }

    /// The reason of the `connectionFailed` that `call` throws, or nil (recording an issue) if it does anything else.
    private func connectionFailureReason(_ call: () async throws -> RPCMessage) async -> String? {
        do {
            _ = try await call()
        } catch RPCError.connectionFailed(let reason) {
            return reason
        } catch {
            Issue.record("expected connectionFailed, got \(error)")
            return nil
        }
        Issue.record("expected connectionFailed, got a reply")
        return nil
    }

    @Test(arguments: [true, false])
    func thousandConcurrentCallsAreAllAnsweredCorrectly(tasksRunOnEventLoop: Bool) async throws {
        // Proves 1000 calls in flight on one connection each get their own echo, on every server path and Task placement.
        try await withServerAndClient(serverConfiguration: RPCServerConfiguration(tasksRunOnEventLoop: tasksRunOnEventLoop)) { server, _, client, _ in
            let futures = (0..<1000).map { index in
                let type = index % 2 == 0 ? RPCTestMessage.echo : RPCTestMessage.echoInTask
                return client.callFuture(rpcTestMessage(type, "call \(index)"), timeout: Self.patience)
            }
            for (index, future) in futures.enumerated() {
                let reply = try await future.get()
                #expect(reply.body == ByteBuffer(string: "call \(index)"))
                #expect(reply.messageType == (index % 2 == 0 ? RPCTestMessage.echo : RPCTestMessage.echoInTask))
            }
            #expect(server.connectionCount == 1)
            #expect(client.isConnected)
        }
    }

    @Test func aSlowCallDoesNotHoldBackAFastOne() async throws {
        // Proves replies go out of order: a fast call sent after a blocked one completes while the first still waits.
        let gate = RPCTestGate()
        try await withServerAndClient(handler: RPCTestHandler(gate: gate)) { _, _, client, _ in
            let slow = client.callFuture(rpcTestMessage(RPCTestMessage.gated, "slow"), timeout: Self.patience)
            let fast = try await client.call(rpcTestMessage(RPCTestMessage.echo, "fast"), timeout: Self.patience)
            #expect(fast.body == ByteBuffer(string: "fast"))
            gate.open()  // the slow call cannot finish before this line
            #expect(try await slow.get().body == ByteBuffer(string: "slow"))
        }
    }

    @Test func aTimedOutCallFailsAloneAndTheConnectionKeepsWorking() async throws {
        // Proves a deadline fails exactly its call, the late reply is dropped, and the same connection still serves calls.
        let gate = RPCTestGate()
        let started = RPCTestCounter()
        try await withServerAndClient(handler: RPCTestHandler(gate: gate, started: started)) { server, _, client, _ in
            await expectError(.timedOut) {
                try await client.call(rpcTestMessage(RPCTestMessage.gated, "late"), timeout: .milliseconds(200))
            }
            let giveUp = ContinuousClock.now + .seconds(10)
            while started.count == 0 && ContinuousClock.now < giveUp { try await Task.sleep(for: .milliseconds(5)) }
            #expect(started.count == 1)  // the request did reach the handler
            gate.open()  // the late reply now arrives and must be ignored
            for index in 0..<20 {
                let reply = try await client.call(rpcTestMessage(RPCTestMessage.echo, "after \(index)"), timeout: Self.patience)
                #expect(reply.body == ByteBuffer(string: "after \(index)"))
            }
            #expect(server.connectionCount == 1)
        }
    }

    @Test func callsOverTheInFlightLimitFailFastWithOverloaded() async throws {
        // Proves client back-pressure: with maxInFlight outstanding, the next call fails at once with overloaded.
        let gate = RPCTestGate()
        let started = RPCTestCounter()
        try await withServerAndClient(
            handler: RPCTestHandler(gate: gate, started: started),
            clientConfiguration: RPCClientConfiguration(inFlightMax: 4)
        ) { _, _, client, _ in
            let blocked = (0..<4).map { client.callFuture(rpcTestMessage(RPCTestMessage.gated, "\($0)"), timeout: Self.patience) }
            await expectError(.overloaded(inFlight: 4, max: 4)) {
                try await client.call(rpcTestMessage(RPCTestMessage.echo, "one too many"), timeout: Self.patience)
            }
            gate.open()
            for future in blocked { _ = try await future.get() }
            #expect(try await client.call(rpcTestMessage(RPCTestMessage.echo, "room again"), timeout: Self.patience).body == ByteBuffer(string: "room again"))
        }
    }

    @Test func remoteErrorsReachTheCallerWithTheirCode() async throws {
        // Proves error responses arrive as RPCError.remote with the handler's code and message, on both server paths.
        try await withServerAndClient { _, _, client, _ in
            await expectError(.remote(code: 42, message: "refused")) {
                try await client.call(rpcTestMessage(RPCTestMessage.fail, ""), timeout: Self.patience)
            }
            await expectError(.remote(code: 43, message: "thrown")) {
                try await client.call(rpcTestMessage(RPCTestMessage.throwInTask, ""), timeout: Self.patience)
            }
        }
    }

    @Test func stoppedServerFailsPendingCallsThenTheClientBacksOffAndReconnects() async throws {
        // Proves a closed connection fails pending calls with connectionClosed, calls fail fast while backing off, and a restarted server is reached again.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let gate = RPCTestGate()
        let started = RPCTestCounter()
        let firstServer = RPCServer(
            host: "127.0.0.1", port: 0, handler: RPCTestHandler(gate: gate, started: started), group: group,
            configuration: RPCServerConfiguration(stopGracePeriod: .milliseconds(100)))
        let port = try await firstServer.start()
        let client = RPCClient(
            host: "127.0.0.1", port: port, group: group,
            configuration: RPCClientConfiguration(backoff: RPCBackoff(delayInitial: .seconds(3), delayMax: .seconds(4))))  // wide enough that a busy machine still makes the second call inside the window

        let pending = client.callFuture(rpcTestMessage(RPCTestMessage.gated, "stranded"), timeout: Self.patience)
        while started.count == 0 { try await Task.sleep(for: .milliseconds(5)) }
        await firstServer.stop()
        await expectError(.connectionClosed) { try await pending.get() }
        #expect(!client.isConnected)

        // The next call tries to connect and is refused; the one after fails fast without trying.
        let refused = await connectionFailureReason { try await client.call(rpcTestMessage(RPCTestMessage.echo, "down"), timeout: Self.patience) }
        #expect(refused?.contains("next attempt in") == false)
        let before = ContinuousClock.now
        let fastFailure = await connectionFailureReason { try await client.call(rpcTestMessage(RPCTestMessage.echo, "still down"), timeout: Self.patience) }
        #expect(fastFailure?.contains("next attempt in") == true)
        #expect(ContinuousClock.now - before < .seconds(5))  // far below the 20 s deadline: it did not wait

        let secondServer = RPCServer(host: "127.0.0.1", port: port, handler: RPCTestHandler(), group: group)
        #expect(try await secondServer.start() == port)
        var reply: RPCMessage?
        let giveUp = ContinuousClock.now + .seconds(15)
        while reply == nil && ContinuousClock.now < giveUp {
            reply = try? await client.call(rpcTestMessage(RPCTestMessage.echo, "back"), timeout: Self.patience)
            if reply == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(reply?.body == ByteBuffer(string: "back"))
        #expect(client.isConnected)

        gate.open()
        await client.shutdown()
        await secondServer.stop()
        try await group.shutdownGracefully()
    }

    @Test func gracefulStopLetsOutstandingRequestsFinish() async throws {
        // Proves stop() waits for a request already being handled and delivers its reply before closing.
        let gate = RPCTestGate()
        let started = RPCTestCounter()
        try await withServerAndClient(handler: RPCTestHandler(gate: gate, started: started)) { server, _, client, _ in
            let inFlight = client.callFuture(rpcTestMessage(RPCTestMessage.gated, "finish me"), timeout: Self.patience)
            while started.count == 0 { try await Task.sleep(for: .milliseconds(5)) }
            async let stopped: Void = server.stop()
            try await Task.sleep(for: .milliseconds(100))
            gate.open()
            #expect(try await inFlight.get().body == ByteBuffer(string: "finish me"))
            await stopped
            #expect(server.connectionCount == 0)
        }
    }

    @Test func shutdownFailsOutstandingAndLaterCalls() async throws {
        // Proves client shutdown fails its outstanding calls and every later call with shutdown.
        let gate = RPCTestGate()
        let started = RPCTestCounter()
        try await withServerAndClient(handler: RPCTestHandler(gate: gate, started: started)) { _, _, client, _ in
            let outstanding = client.callFuture(rpcTestMessage(RPCTestMessage.gated, "cut"), timeout: Self.patience)
            while started.count == 0 { try await Task.sleep(for: .milliseconds(5)) }
            await client.shutdown()
            await expectError(.shutdown) { try await outstanding.get() }
            await expectError(.shutdown) { try await client.call(rpcTestMessage(RPCTestMessage.echo, ""), timeout: Self.patience) }
            gate.open()
        }
    }

    @Test func callToAnAddressWithNoServerFailsWithConnectionFailed() async throws {
        // Proves a refused connect surfaces as connectionFailed rather than a hang or a timeout.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let probe = RPCServer(host: "127.0.0.1", port: 0, handler: RPCTestHandler(), group: group)
        let port = try await probe.start()
        await probe.stop()  // a port that was just free and now has no listener
        let client = RPCClient(host: "127.0.0.1", port: port, group: group)
        let reason = await connectionFailureReason { try await client.call(rpcTestMessage(RPCTestMessage.echo, ""), timeout: Self.patience) }
        #expect(reason?.contains("127.0.0.1:\(port)") == true)
        await client.shutdown()
        try await group.shutdownGracefully()
    }
}
