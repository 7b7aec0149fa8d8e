import Foundation
import Hummingbird
import HTTPTypes
import NIOCore
import RingstoreCore
import Synchronization

/// A subject of the catalogue.
public struct Subject: Codable, Sendable, Hashable {
    public var code: String
    public var title: String
    public var term: String
    /// Mon, Tue, Wed, Thu or Fri.
    public var day: String
    /// "HH:MM", 24-hour.
    public var start: String
    public var end: String
    public var capacity: Int

    public init(code: String, title: String, term: String, day: String, start: String, end: String, capacity: Int) {
        self.code = code
        self.title = title
        self.term = term
        self.day = day
        self.start = start
        self.end = end
        self.capacity = capacity
    }

    /// Minutes since midnight.
    static func minutes(_ time: String) -> Int {
        let parts = time.split(separator: ":").compactMap { Int($0) }
        return parts.count == 2 ? parts[0] * 60 + parts[1] : 0
    }

    /// Whether two subjects meet at overlapping times on the same day of the same term.
    func clashes(with other: Subject) -> Bool {
        term == other.term && day == other.day
            && Self.minutes(start) < Self.minutes(other.end) && Self.minutes(other.start) < Self.minutes(end)
    }
}

/// A student of the demo list.
public struct Student: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    public var program: String

    public init(id: String, name: String, program: String) {
        self.id = id
        self.name = name
        self.program = program
    }

    /// `s` and seven digits.
    public static func isValidID(_ id: String) -> Bool {
        id.utf8.count == 8 && id.first == "s" && id.dropFirst().allSatisfy { $0.isASCII && $0.isNumber }
    }
}

/// Where the enrolment app keeps its data, in three tables:
/// - `catalog` (eventual): key `subjects`, the catalogue as a JSON array;
/// - `students` (eventual): one JSON record per student id;
/// - `enrolment` (linearizable): `roster/{code}`, the set of student ids enrolled
///   in a subject, capped at its capacity (the cap is what makes overselling
///   impossible), and `student/{id}`, the set of subject codes a student is in.
public enum EnrolmentTables {
    public static let catalog = "catalog"
    public static let students = "students"
    public static let enrolment = "enrolment"
    public static let catalogKey = "subjects"
    /// The most subjects one student may hold.
    public static let subjectsPerStudentMax = 12

    public static func rosterKey(_ code: String) -> String { "roster/\(code)" }
    public static func studentKey(_ id: String) -> String { "student/\(id)" }
}

/// The enrolment app's JSON API (`/app/v1/…`), served by the ring servers on top of
/// the cluster's own data paths.
///
/// Enrolling adds the student to the subject's roster set with the subject's
/// capacity as cap (a linearizable set add: it refuses with `set_full` rather than
/// oversell), then adds the subject to the student's own set. Both steps are
/// idempotent, so an enrolment whose answer was lost can be sent again. Dropping
/// removes from the roster first (freeing the seat), then from the student's set.
/// Seat numbers are linearizable reads of the rosters: never stale.
final class EnrolmentAPI: Sendable {
    let tables: any TableDirectory
    let kv: any KeyValueService
    let linearizable: any LinearizableService
    private let catalogCache = Mutex<(subjects: [Subject], read: ContinuousClock.Instant)?>(nil)
    private let knownStudents = Mutex<[String: Student]>([:])
    /// Each subject's JSON without its closing brace, by code, with the subject it
    /// encodes: a page of the catalogue shows 40 of them on every browse.
    private let encodedSubjects = Mutex<[String: (subject: Subject, json: String)]>([:])
    /// How long the catalogue (not the seat numbers) is kept between reads.
    static let catalogTTL: Duration = .seconds(5)

    init(tables: any TableDirectory, kv: any KeyValueService, linearizable: any LinearizableService) {
        self.tables = tables
        self.kv = kv
        self.linearizable = linearizable
    }

    func respond(to request: Request) async throws -> Response {
        let segments = request.uri.path.split(separator: "/", omittingEmptySubsequences: false).dropFirst(3).map(String.init)
        switch (segments.first ?? "", segments.count) {
        case ("subjects", 1):
            try expect([.get], request)
            let subjects = try await catalogue()
            let seated = try await withSeats(subjects)
            return NodeHTTPAPI.jsonResponse(.ok, "{\"subjects\":[\(seated.joined(separator: ","))]}")
        case ("students", 2):
            try expect([.get], request)
            let student = try await student(segments[1])
            return NodeHTTPAPI.jsonResponse(.ok, try Self.json(student))
        case ("students", 3) where segments[2] == "enrolments":
            try expect([.get], request)
            let student = try await student(segments[1])
            let codes = try await enrolledCodes(of: student.id)
            let subjects = try await catalogue().filter { codes.contains($0.code) }
            let seated = try await withSeats(subjects)
            return NodeHTTPAPI.jsonResponse(.ok, "{\"student\":\(JSONText.quote(student.id)),\"subjects\":[\(seated.joined(separator: ","))]}")
        case ("students", 4) where segments[2] == "enrolments":
            try expect([.post, .delete], request)
            let student = try await student(segments[1])
            let code = Self.percentDecoded(segments[3])
            guard let subject = try await catalogue().first(where: { $0.code == code }) else {
                throw APIError(.notFound, code: "subject_not_found", message: "There is no subject \(code) in the catalogue.")
            }
            if request.method == .post {
                return try await enrol(student, in: subject)
            }
            return try await drop(student, from: subject)
        default:
            throw APIError.routeNotFound(request.uri.path)
        }
    }

    private func expect(_ methods: [HTTPRequest.Method], _ request: Request) throws(APIError) {
        guard methods.contains(request.method) else {
            throw .methodNotAllowed(request.method, path: request.uri.path, allowed: methods)
        }
    }

    // MARK: Enrol and drop

    private func enrol(_ student: Student, in subject: Subject) async throws -> Response {
        // Read for update: the student's set is changed below when the seat is taken.
        let codes = try await enrolledCodes(of: student.id, forUpdate: true)
        if codes.contains(subject.code) {
            throw APIError(.conflict, code: "already_enrolled", message: "You are already enrolled in \(subject.code) \(subject.title).")
        }
        let catalogue = try await catalogue()
        let clashing = catalogue.filter { $0.code != subject.code && $0.clashes(with: subject) }
        if let clash = clashing.first(where: { codes.contains($0.code) }) {
            throw Self.clash(subject, clash)
        }
        guard codes.count < EnrolmentTables.subjectsPerStudentMax else { throw Self.tooManySubjects }
        // The seat: the roster's cap refuses the student one past capacity.
        let enrolled: Int
        switch try await change(EnrolmentTables.rosterKey(subject.code), .setAdd(member: student.id, cap: subject.capacity)) {
        case .applied(let roster):
            enrolled = roster?.memberCount ?? 0
        case .refused(.setFull(let count, _), _):
            throw APIError(.conflict, code: "subject_full", message: "\(subject.code) is full: all \(subject.capacity) seats are taken.",
                           extraJSON: ",\"capacity\":\(subject.capacity),\"enrolled\":\(count)")
        case .refused(let reason, _):
            throw APIError.internalError("The roster of \(subject.code) refused the enrolment: \(reason).")
        case .failed(let failure, let message):
            throw Self.unavailable(failure, message)
        }
        // The student's own list. The clash and the subject count are checked again in
        // the same step as the addition: another enrolment of the same student may
        // have changed the list since it was read. Retried a few times here: the seat
        // is already held.
        let addition = LinearizableChange.setAddUnless(
            member: subject.code, cap: EnrolmentTables.subjectsPerStudentMax, conflicts: clashing.map(\.code))
        let unfinished = { (reason: String) in "the seat in \(subject.code) is held, but the timetable could not be updated (\(reason)); send the enrolment again to finish it" }
        switch try await changeRetried(EnrolmentTables.studentKey(student.id), addition, unfinished: unfinished) {
        case .refused(.conflictingMember(let code), _):
            try await release(student, from: subject)
            guard let clash = clashing.first(where: { $0.code == code }) else {
                throw APIError.internalError("The timetable of \(student.id) refused \(subject.code) for \(code), which does not clash with it.")
            }
            throw Self.clash(subject, clash)
        case .refused(.setFull, _):
            try await release(student, from: subject)
            throw Self.tooManySubjects
        case .refused(let reason, _):
            throw APIError.internalError("The timetable of \(student.id) refused \(subject.code): \(reason).")
        case .applied, .failed:  // (changeRetried never answers .failed)
            return NodeHTTPAPI.jsonResponse(.ok, "{\"status\":\"enrolled\",\"subject\":\(try json(subject, enrolled: enrolled))}")
        }
    }

    /// Gives back the seat an enrolment took when the student's list then refused the
    /// subject; the roster must not keep a student who is not enrolled.
    private func release(_ student: Student, from subject: Subject) async throws {
        let unfinished = { (reason: String) in "another enrolment changed your timetable, and the seat taken in \(subject.code) could not be given back (\(reason)); reload your timetable" }
        if case .refused(let reason, _) = try await changeRetried(EnrolmentTables.rosterKey(subject.code), .setRemove(member: student.id), unfinished: unfinished) {
            throw APIError.internalError("The roster of \(subject.code) refused to give back the seat of \(student.id): \(reason).")
        }
    }

    /// A change that must happen because an earlier one did (the seat is held): tried
    /// up to three times while no majority answers, then answered 503 with an unknown
    /// outcome, `unfinished` saying (from the last reason) what is left undone. Never
    /// returns `.failed`.
    private func changeRetried(
        _ key: String, _ change: LinearizableChange, unfinished: (String) -> String
    ) async throws -> LinearizableAnswer {
        var reason = ""
        for attempt in 0..<3 {
            let answer = try await self.change(key, change)
            guard case .failed(_, let message) = answer else { return answer }
            reason = message
            try? await Task.sleep(for: .milliseconds(100 << attempt))
        }
        throw Self.unavailable(.outcomeUnknown, unfinished(reason))
    }

    private static func clash(_ subject: Subject, _ clash: Subject) -> APIError {
        APIError(.conflict, code: "timetable_clash",
                 message: "\(subject.code) meets \(subject.day) \(subject.start)–\(subject.end), at the same time as \(clash.code) \(clash.title) (\(clash.day) \(clash.start)–\(clash.end)).",
                 extraJSON: ",\"clash_with\":\((try? json(clash)) ?? "null")")
    }

    private static var tooManySubjects: APIError {
        APIError(.conflict, code: "too_many_subjects", message: "A student may hold at most \(EnrolmentTables.subjectsPerStudentMax) subjects.")
    }

    private func drop(_ student: Student, from subject: Subject) async throws -> Response {
        let codes = try await enrolledCodes(of: student.id)
        if !codes.contains(subject.code) {
            // A drop cut off between its two steps leaves the roster alone holding the student.
            let roster = try await members(EnrolmentTables.rosterKey(subject.code))
            guard roster.contains(student.id) else {
                throw APIError(.conflict, code: "not_enrolled", message: "You are not enrolled in \(subject.code) \(subject.title).")
            }
        }
        var enrolled = 0
        for (key, member) in [(EnrolmentTables.rosterKey(subject.code), student.id), (EnrolmentTables.studentKey(student.id), subject.code)] {
            switch try await change(key, .setRemove(member: member)) {
            case .applied(let value): if key == EnrolmentTables.rosterKey(subject.code) { enrolled = value?.memberCount ?? 0 }
            case .refused(let reason, _): throw APIError.internalError("Dropping \(subject.code) was refused: \(reason).")
            case .failed(let failure, let message): throw Self.unavailable(failure, message)
            }
        }
        return NodeHTTPAPI.jsonResponse(.ok, "{\"status\":\"dropped\",\"subject\":\(try json(subject, enrolled: enrolled))}")
    }

    // MARK: Data

    private func table(_ name: String) throws(APIError) -> TableDefinition {
        guard let table = tables.table(named: name) else {
            throw APIError.unavailable(code: "not_seeded", message: "The enrolment data is not loaded (table '\(name)' is missing); run `ringstore seed`.")
        }
        return table
    }

    private func change(_ key: String, _ change: LinearizableChange, forUpdate: Bool = false) async throws -> LinearizableAnswer {
        try await linearizable.run(table: try table(EnrolmentTables.enrolment), key: Array(key.utf8), change: change, forUpdate: forUpdate)
    }

    /// The members of a set key (empty when absent), read linearizably.
    private func members(_ key: String, forUpdate: Bool = false) async throws -> [String] {
        switch try await change(key, .read, forUpdate: forUpdate) {
        case .applied(let value):
            guard let value, case .set(let members) = value.content else { return [] }
            return members
        case .refused(let reason, _):
            throw APIError.internalError("Reading \(key) was refused: \(reason).")
        case .failed(let failure, let message):
            throw Self.unavailable(failure.isNotApplied ? failure : .noQuorum, message)
        }
    }

    private func enrolledCodes(of student: String, forUpdate: Bool = false) async throws -> Set<String> {
        Set(try await members(EnrolmentTables.studentKey(student), forUpdate: forUpdate))
    }

    /// Every subject as JSON with its seats taken and left, read concurrently.
    private func withSeats(_ subjects: [Subject]) async throws -> [String] {
        let answers = try await linearizable.memberCounts(
            table: try table(EnrolmentTables.enrolment), keys: subjects.map { Array(EnrolmentTables.rosterKey($0.code).utf8) })
        let counts = try answers.map { answer -> Int in
            switch answer {
            case .counted(let members):
                return members
            case .refused(let reason):
                throw APIError.internalError("Reading a roster was refused: \(reason).")
            case .failed(let failure, let message):
                throw Self.unavailable(failure.isNotApplied ? failure : .noQuorum, message)
            }
        }
        return try zip(subjects, counts).map { subject, enrolled in try json(subject, enrolled: enrolled) }
    }

    /// A subject as JSON with its seats taken and left.
    private func json(_ subject: Subject, enrolled: Int) throws -> String {
        let open: String
        if let known = encodedSubjects.withLock({ $0[subject.code] }), known.subject == subject {
            open = known.json
        } else {
            var json = try Self.json(subject)
            json.removeLast()
            open = json
            encodedSubjects.withLock { encoded in
                if encoded.count >= 1_000 { encoded.removeAll() }
                encoded[subject.code] = (subject, json)
            }
        }
        return open + ",\"enrolled\":\(enrolled),\"seats_left\":\(max(0, subject.capacity - enrolled))}"
    }

    func catalogue() async throws -> [Subject] {
        if let cached = catalogCache.withLock({ $0 }), ContinuousClock.now - cached.read < Self.catalogTTL { return cached.subjects }
        let result = try await Self.read("the catalogue") {
            try await kv.get(table: try table(EnrolmentTables.catalog), key: Array(EnrolmentTables.catalogKey.utf8), r: nil)
        }
        guard case .found(let object) = result, let bytes = object.values.first(where: { !$0.isTombstone })?.data else {
            throw APIError.unavailable(code: "not_seeded", message: "The catalogue is empty; run `ringstore seed`.")
        }
        let subjects = try JSONDecoder().decode([Subject].self, from: Data(bytes))
        catalogCache.withLock { $0 = (subjects, ContinuousClock.now) }
        return subjects
    }

    private func student(_ raw: String) async throws -> Student {
        let id = Self.percentDecoded(raw)
        guard Student.isValidID(id) else {
            throw APIError(.badRequest, code: "invalid_student_id", message: "'\(id)' is not a student id: an id is s followed by seven digits, like s1000001.")
        }
        if let known = knownStudents.withLock({ $0[id] }) { return known }
        let result = try await Self.read("the student record") {
            try await kv.get(table: try table(EnrolmentTables.students), key: Array(id.utf8), r: nil)
        }
        guard case .found(let object) = result, let bytes = object.values.first(where: { !$0.isTombstone })?.data,
              let student = try? JSONDecoder().decode(Student.self, from: Data(bytes))
        else {
            throw APIError(.notFound, code: "student_not_found", message: "There is no student \(id).")
        }
        knownStudents.withLock { known in
            if known.count > 100_000 { known.removeAll() }
            known[id] = student
        }
        return student
    }

    /// An eventual read whose 503 is told as the app tells every outage: `unavailable`,
    /// nothing applied.
    private static func read(_ what: String, _ body: () async throws -> ReadResult) async throws -> ReadResult {
        do {
            return try await body()
        } catch let error as APIError where error.status == .serviceUnavailable {
            throw unavailable(.noQuorum, "\(what) could not be read: not enough replicas answered")
        }
    }

    /// A path segment percent-decoded (as is when it is not valid percent-encoding);
    /// most segments have no `%`, and skip Foundation's decoder.
    static func percentDecoded(_ segment: String) -> String {
        guard segment.utf8.contains(UInt8(ascii: "%")) else { return segment }
        return segment.removingPercentEncoding ?? segment
    }

    // MARK: JSON

    static func json(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func unavailable(_ failure: LinearizableFailure, _ message: String) -> APIError {
        var error = NodeHTTPAPI.unavailableError(failure, message: message)
        error.code = "unavailable"
        return error
    }
}
