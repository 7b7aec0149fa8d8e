import ArgumentParser
import Foundation
import NIOCore
import RingstoreBench
import RingstoreClient
import RingstoreCore
import Synchronization

/// `ringstore bench rush`: enrolment morning against a cluster. Students sign in,
/// browse the catalogue and try to enrol in 4–6 subjects each, popular subjects
/// first (skipping those the catalogue already shows as full), through the
/// enrolment API of the ring servers. Afterwards it checks that
/// no subject is over capacity, that every confirmed enrolment is in the student's
/// timetable and in the subject's roster, and that every refusal was true.
struct RushBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rush",
        abstract: "Simulate enrolment morning (the 9am rush) and check that nothing was oversold or lost."
    )

    @Option(name: .customLong("url"), help: "Ring server endpoints, comma-separated (the next is tried when one fails).")
    var urls: String = ProcessInfo.processInfo.environment["RINGSTORE_URL"] ?? "http://127.0.0.1:8080,http://127.0.0.1:8081"

    @Option(help: "Students taking part: s1000001 … (they must be seeded: `ringstore seed --students N`).")
    var students: Int = 5000

    @Option(help: "Subjects of the catalogue to use (the first N).")
    var subjects: Int = 40

    @Option(help: "Students enrolling at the same time (closed loop: the next starts when one is done). With --arrival-rate, the HTTP clients the arriving students share.")
    var concurrency: Int = 64

    @Option(help: "Students arriving per second (open loop): student i starts at i/rate seconds whether or not the others are done, so latencies are those of a cluster offered that load, not of one kept saturated.")
    var arrivalRate: Double?

    @Option(help: "Seed of the students' choices.")
    var seed: UInt64 = 9

    @Option(help: "Under `ringstore dev`: stop this node (through the dashboard's controls) once half the students are done.")
    var killMidway: String?

    @Option(help: "Write the report as JSON to this file too.")
    var json: String?

    func validate() throws {
        guard students >= 1, concurrency >= 1, subjects >= 1 else { throw ValidationError("--students, --subjects and --concurrency must be positive.") }
        if let arrivalRate, !(arrivalRate > 0 && arrivalRate.isFinite) { throw ValidationError("--arrival-rate must be a positive number of students per second.") }
        guard !endpoints().isEmpty else { throw ValidationError("--url must be http://HOST:PORT (comma-separated for several).") }
    }

    func endpoints() -> [Endpoint] { urls.split(separator: ",").compactMap { Endpoint(parsing: String($0)) } }

    func run() async throws {
        let rush = Rush(
            endpoints: endpoints(), students: students, subjectsUsed: subjects, concurrency: concurrency, arrivalRate: arrivalRate,
            seed: seed, killMidway: killMidway)
        let report = try await rush.run()
        say(report.text)
        if let json { try Data(report.json.utf8).write(to: URL(fileURLWithPath: json)) }
        if !report.passed { throw ExitCode(1) }
    }
}

/// What the API answered about a subject, as far as the rush needs it.
private struct SubjectInfo: Decodable, Sendable {
    var code: String
    var capacity: Int
    var enrolled: Int
    var term: String
    var day: String
    var start: String
    var end: String

    /// Whether the two meet at overlapping times on the same day of the same term.
    func clashes(with other: SubjectInfo) -> Bool {
        func minutes(_ time: String) -> Int {
            let parts = time.split(separator: ":").compactMap { Int($0) }
            return parts.count == 2 ? parts[0] * 60 + parts[1] : 0
        }
        return term == other.term && day == other.day
            && minutes(start) < minutes(other.end) && minutes(other.start) < minutes(end)
    }
}

private final class RushProgress: Sendable {
    let next = Atomic<Int>(0)
    let done = Atomic<Int>(0)
    let killed = Atomic<Bool>(false)
    /// Students in their session now, and the most there were at once.
    let inSession = Atomic<Int>(0)
    let peakInSession = Atomic<Int>(0)
}

private final class RushLog: Sendable {
    struct State {
        var latencies: [String: [Double]] = [:]
        var outcomes: [String: Int] = [:]
        /// student → subjects confirmed enrolled.
        var confirmed: [String: Set<String>] = [:]
        /// student → subjects whose outcome was unknown and never settled.
        var fullRefusals: [(subject: String, capacity: Int, enrolled: Int)] = []
        var clashRefusals: [(student: String, subject: String, with: String)] = []
        var errors: [String] = []
    }

    let state = Mutex(State())

    func time(_ operation: String, _ started: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - started
        let milliseconds = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        state.withLock { $0.latencies[operation, default: []].append(milliseconds) }
    }

    func count(_ outcome: String) { state.withLock { $0.outcomes[outcome, default: 0] += 1 } }
}

private struct Rush: Sendable {
    let endpoints: [Endpoint]
    let students: Int
    let subjectsUsed: Int
    let concurrency: Int
    /// Students arriving per second (open loop); nil runs `concurrency` students at a time.
    let arrivalRate: Double?
    let seed: UInt64
    let killMidway: String?
    let log = RushLog()

    struct Report {
        var text: String
        var json: String
        var passed: Bool
    }

    func run() async throws -> Report {
        let setup = RingstoreHTTPClient(endpoints: endpoints, timeout: .seconds(10))
        let catalogue = try await subjectInfo(setup).prefix(subjectsUsed).map(\.code)
        guard !catalogue.isEmpty else { throw ValidationError("the catalogue is empty; run `ringstore seed` first") }
        // Popularity: a Zipf-like weight over the catalogue in a seeded order.
        var random = SplitMixGenerator(seed: seed)
        let ranked = catalogue.shuffled(using: &random)
        let weights = ranked.indices.map { 1.0 / pow(Double($0 + 1), 0.9) }

        let progress = RushProgress()
        let started = ContinuousClock.now
        if let arrivalRate {
            let clients = (0..<concurrency).map { RingstoreHTTPClient(endpoints: endpoints.rotated(by: $0), timeout: .seconds(10)) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for number in 1...students {
                    // Arrivals keep to the timetable however slow the cluster is.
                    try await Task.sleep(until: started + .seconds(Double(number - 1) / arrivalRate), clock: .continuous)
                    let client = clients[number % clients.count]
                    group.addTask {
                        var random = SplitMixGenerator(seed: seed &+ UInt64(number) &* 0x9E37_79B9)
                        let now = progress.inSession.add(1, ordering: .relaxed).newValue
                        progress.peakInSession.max(now, ordering: .relaxed)
                        await student("s" + String(1_000_000 + number), client: client, ranked: ranked, weights: weights, random: &random)
                        progress.inSession.subtract(1, ordering: .relaxed)
                        await finished(progress, client: client)
                    }
                }
                try await group.waitForAll()
            }
            for client in clients { client.closeIdleConnections() }
        } else {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for lane in 0..<concurrency {
                    group.addTask {
                        let client = RingstoreHTTPClient(endpoints: endpoints.rotated(by: lane), timeout: .seconds(10))
                        var random = SplitMixGenerator(seed: seed &+ UInt64(lane) &* 0x9E37_79B9)
                        while true {
                            let number = progress.next.add(1, ordering: .relaxed).newValue
                            guard number <= students else { break }
                            await student("s" + String(1_000_000 + number), client: client, ranked: ranked, weights: weights, random: &random)
                            await finished(progress, client: client)
                        }
                        client.closeIdleConnections()
                    }
                }
                try await group.waitForAll()
            }
        }
        let elapsed = ContinuousClock.now - started
        return try await check(setup, elapsed: elapsed, catalogue: Set(catalogue), peakInSession: progress.peakInSession.load(ordering: .relaxed))
    }

    /// Counts a student done; with --kill-midway, stops the node once half are.
    private func finished(_ progress: RushProgress, client: RingstoreHTTPClient) async {
        let finished = progress.done.add(1, ordering: .relaxed).newValue
        if let killMidway, finished >= students / 2, progress.killed.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged {
            let reply = try? await client.send(method: "POST", path: "/app/v1/dev/nodes/\(killMidway)/stop")
            say("midway: stopping \(killMidway): \(reply.map { String(decoding: $0.body, as: UTF8.self) } ?? "no answer")")
        }
    }

    /// One student's morning.
    private func student(_ id: String, client: RingstoreHTTPClient, ranked: [String], weights: [Double], random: inout SplitMixGenerator) async {
        guard await call(client, "sign_in", "GET", "/app/v1/students/\(id)") != nil else { return }
        guard let browsed = await call(client, "browse", "GET", "/app/v1/subjects") else { return }
        // Like a student at the page, nobody clicks Enrol on a subject shown as full.
        let full = SubjectPageScan.fullSubjects(in: browsed.body) ?? {
            struct List: Decodable { var subjects: [SubjectInfo] }
            return Set(((try? JSONDecoder().decode(List.self, from: Data(browsed.body)))?.subjects ?? []).filter { $0.enrolled >= $0.capacity }.map(\.code))
        }()
        let wanted = Int.random(in: 4...6, using: &random)
        var candidates = Array(zip(ranked, weights)).filter { !full.contains($0.0) }
        var enrolled = 0
        var attempts = 0
        while enrolled < wanted && attempts < wanted + 6 && !candidates.isEmpty {
            attempts += 1
            let total = candidates.reduce(0) { $0 + $1.1 }
            var pick = Double.random(in: 0..<total, using: &random)
            var index = 0
            while index < candidates.count - 1 && pick >= candidates[index].1 {
                pick -= candidates[index].1
                index += 1
            }
            let code = candidates.remove(at: index).0
            if await enrol(id, code, client: client) { enrolled += 1 }
        }
        _ = await call(client, "timetable", "GET", "/app/v1/students/\(id)/enrolments")
    }

    /// Enrols, retrying what the API says was not applied; an unknown outcome is
    /// settled by sending the (idempotent) enrolment again. Returns whether enrolled.
    private func enrol(_ student: String, _ code: String, client: RingstoreHTTPClient) async -> Bool {
        var settlingUnknown = false
        for attempt in 0..<20 {
            guard let reply = await call(client, "enrol", "POST", "/app/v1/students/\(student)/enrolments/\(code)") else {
                settlingUnknown = true
                try? await Task.sleep(for: .milliseconds(50 << min(attempt, 4)))
                continue
            }
            let body = (try? JSONSerialization.jsonObject(with: Data(reply.body))) as? [String: Any] ?? [:]
            let error = body["error"] as? String
            switch (reply.status, error) {
            case (200, _):
                log.count("enrolled")
                log.state.withLock { _ = $0.confirmed[student, default: []].insert(code) }
                return true
            case (409, "already_enrolled") where settlingUnknown:
                log.count("enrolled")
                log.state.withLock { _ = $0.confirmed[student, default: []].insert(code) }
                return true
            case (409, "subject_full"):
                log.count("full")
                let capacity = body["capacity"] as? Int ?? -1, enrolled = body["enrolled"] as? Int ?? -1
                log.state.withLock { $0.fullRefusals.append((code, capacity, enrolled)) }
                return false
            case (409, "timetable_clash"):
                log.count("clash")
                let with = (body["clash_with"] as? [String: Any])?["code"] as? String ?? "?"
                log.state.withLock { $0.clashRefusals.append((student, code, with)) }
                return false
            case (409, _):
                log.count(error ?? "conflict")
                return false
            case (503, _):
                if body["outcome"] as? String == "unknown" { settlingUnknown = true }
                log.count("retried_503")
                try? await Task.sleep(for: .milliseconds(50 << min(attempt, 4)))
            default:
                log.state.withLock { $0.errors.append("enrol \(student) \(code): \(reply.status) \(String(decoding: reply.body.prefix(200), as: UTF8.self))") }
                return false
            }
        }
        log.count("gave_up")
        return false
    }

    private func call(_ client: RingstoreHTTPClient, _ operation: String, _ method: String, _ path: String) async -> HTTPReply? {
        let started = ContinuousClock.now
        do {
            let reply = try await client.send(method: method, path: path)
            log.time(operation, started)
            if reply.status >= 500 && operation != "enrol" {
                log.count("\(operation)_\(reply.status)")
                return nil
            }
            return reply
        } catch {
            log.count("\(operation)_transport_error")
            return nil
        }
    }

    private func subjectInfo(_ client: RingstoreHTTPClient) async throws -> [SubjectInfo] {
        for _ in 0..<50 {
            if let reply = try? await client.send(method: "GET", path: "/app/v1/subjects"), reply.status == 200 {
                struct List: Decodable { var subjects: [SubjectInfo] }
                return try JSONDecoder().decode(List.self, from: Data(reply.body)).subjects
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw ValidationError("the subjects could not be read from \(endpoints)")
    }

    // MARK: Checks and report

    private func check(_ client: RingstoreHTTPClient, elapsed: Duration, catalogue: Set<String>, peakInSession: Int) async throws -> Report {
        let state = log.state.withLock { $0 }
        var problems: [String] = state.errors.prefix(5).map { "error: \($0)" }
        let subjects = try await subjectInfo(client).filter { catalogue.contains($0.code) }
        // Rosters, read linearizably from the enrolment table.
        var rosters: [String: Set<String>] = [:]
        for subject in subjects {
            let key = EnrolmentKeys.roster(subject.code).addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
            guard let reply = try? await client.send(method: "GET", path: "/v1/kv/enrolment/\(key)") else {
                problems.append("roster of \(subject.code) could not be read")
                continue
            }
            if reply.status == 404 { rosters[subject.code] = []; continue }
            let members = ((try? JSONSerialization.jsonObject(with: Data(reply.body))) as? [String: Any])?["members"] as? [String] ?? []
            rosters[subject.code] = Set(members)
            if members.count > subject.capacity { problems.append("\(subject.code) holds \(members.count) students, over its capacity \(subject.capacity)") }
        }
        var oversold = 0
        for subject in subjects where (rosters[subject.code]?.count ?? 0) > subject.capacity { oversold += (rosters[subject.code]?.count ?? 0) - subject.capacity }
        // Every confirmed enrolment in the roster and in the student's timetable, and no
        // timetable holding two subjects that meet at the same time.
        var lost = 0
        var clashing = 0
        let info = Dictionary(subjects.map { ($0.code, $0) }, uniquingKeysWith: { a, _ in a })
        for (student, codes) in state.confirmed {
            guard let reply = try? await client.send(method: "GET", path: "/app/v1/students/\(student)/enrolments"), reply.status == 200 else {
                problems.append("timetable of \(student) could not be read")
                continue
            }
            let timetable = Set((((try? JSONSerialization.jsonObject(with: Data(reply.body))) as? [String: Any])?["subjects"] as? [[String: Any]] ?? []).compactMap { $0["code"] as? String })
            for code in codes where !timetable.contains(code) || !(rosters[code]?.contains(student) ?? false) {
                lost += 1
                if lost <= 5 { problems.append("\(student)'s confirmed enrolment in \(code) is missing from \(timetable.contains(code) ? "the roster" : "the timetable")") }
            }
            let held = timetable.sorted().compactMap { info[$0] }
            if let (a, b) = held.indices.lazy.flatMap({ i in held[(i + 1)...].lazy.map { (held[i], $0) } }).first(where: { $0.clashes(with: $1) }) {
                clashing += 1
                if clashing <= 5 { problems.append("\(student)'s timetable holds \(a.code) and \(b.code), which meet at the same time") }
            }
        }
        // Refusals: a full subject was full when refused (and stays full: nobody drops);
        // a clash names a subject the student holds.
        var untrue = 0
        let capacities = Dictionary(subjects.map { ($0.code, $0.capacity) }, uniquingKeysWith: { a, _ in a })
        for refusal in state.fullRefusals where refusal.enrolled != refusal.capacity || (rosters[refusal.subject]?.count ?? 0) != capacities[refusal.subject] {
            untrue += 1
            if untrue <= 5 { problems.append("\(refusal.subject) was refused as full at \(refusal.enrolled)/\(refusal.capacity)") }
        }
        for refusal in state.clashRefusals where !(state.confirmed[refusal.student]?.contains(refusal.with) ?? false) && !(rosters[refusal.with]?.contains(refusal.student) ?? false) {
            untrue += 1
            if untrue <= 5 { problems.append("\(refusal.student) was refused \(refusal.subject) for a clash with \(refusal.with), which it does not hold") }
        }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let enrolled = state.outcomes["enrolled"] ?? 0
        let load = arrivalRate.map { String(format: "arriving %g/s (open loop, at most %d at once)", $0, peakInSession) } ?? "concurrency \(concurrency)"
        var lines = ["rush: \(students) students, \(subjects.count) subjects, \(load), \(String(format: "%.1f", seconds)) s"]
        lines.append(String(format: "  enrolments: %d confirmed (%.0f/s); full %d, clash %d, retried 503 %d, gave up %d", enrolled, Double(enrolled) / seconds,
                            state.outcomes["full"] ?? 0, state.outcomes["clash"] ?? 0, state.outcomes["retried_503"] ?? 0, state.outcomes["gave_up"] ?? 0))
        var operationsJSON: [String] = []
        for operation in ["sign_in", "browse", "enrol", "timetable"] {
            let sorted = (state.latencies[operation] ?? []).sorted()
            guard !sorted.isEmpty else { continue }
            func percentile(_ p: Double) -> Double { sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] }
            lines.append(String(format: "  %-9@ %6d requests, %7.1f/s  p50 %6.2f ms  p99 %6.2f ms  max %7.1f ms", operation as NSString, sorted.count, Double(sorted.count) / seconds, percentile(0.5), percentile(0.99), sorted.last!))
            operationsJSON.append(String(format: "\"%@\":{\"requests\":%d,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f}", operation, sorted.count, percentile(0.5), percentile(0.99), sorted.last!))
        }
        let transport = state.outcomes.filter { $0.key.hasSuffix("_transport_error") || $0.key.hasSuffix("_503") }.map { "\($0.key)=\($0.value)" }.sorted()
        if !transport.isEmpty { lines.append("  failures seen by clients: \(transport.joined(separator: ", "))") }
        lines.append("  checks: oversold seats \(oversold), lost enrolments \(lost), untrue refusals \(untrue), clashing timetables \(clashing)")
        let passed = oversold == 0 && lost == 0 && untrue == 0 && clashing == 0 && problems.isEmpty
        lines += problems.map { "  ! \($0)" }
        lines.append(passed ? "  all checks passed" : "  CHECKS FAILED")
        let mode = arrivalRate.map { "\"arrival_rate\":\($0),\"peak_in_session\":\(peakInSession)," } ?? "\"concurrency\":\(concurrency),"
        let json = "{\"students\":\(students),\"subjects\":\(subjects.count),\(mode)\"seconds\":\(String(format: "%.3f", seconds)),\"enrolled\":\(enrolled),"
            + "\"enrolments_per_second\":\(String(format: "%.1f", Double(enrolled) / seconds)),\"full\":\(state.outcomes["full"] ?? 0),\"clash\":\(state.outcomes["clash"] ?? 0),"
            + "\"operations\":{\(operationsJSON.joined(separator: ","))},\"oversold\":\(oversold),\"lost\":\(lost),\"untrue_refusals\":\(untrue),\"clashing_timetables\":\(clashing),\"passed\":\(passed)}"
        return Report(text: lines.joined(separator: "\n"), json: json, passed: passed)
    }
}

/// The enrolment table's keys, as the rush reads them directly.
private enum EnrolmentKeys {
    static func roster(_ code: String) -> String { "roster/\(code)" }
}

extension Array {
    /// The array with its first `count` elements moved to the end.
    fileprivate func rotated(by count: Int) -> [Element] {
        guard !isEmpty else { return self }
        let shift = count % self.count
        return Array(self[shift...] + self[..<shift])
    }
}
