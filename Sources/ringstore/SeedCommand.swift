import ArgumentParser
import Foundation
import NIOCore
import RingstoreClient
import RingstoreServer

/// `ringstore seed`: loads the enrolment app's catalogue and demo students.
struct SeedCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seed",
        abstract: "Load the enrolment app's catalogue (about 40 subjects) and demo students into a cluster."
    )

    @Option(name: .customLong("url"), help: "Ring server (or node) HTTP endpoints, comma-separated. Default: $RINGSTORE_URL, else the ring servers of `ringstore dev`.")
    var urls: String = ProcessInfo.processInfo.environment["RINGSTORE_URL"] ?? "http://127.0.0.1:8080,http://127.0.0.1:8081"

    @Option(help: "Demo students to create: s1000001, s1000002, …")
    var students: Int = 5000

    @Option(help: "Subjects in the catalogue (at most \(Catalogue.subjects.count)).")
    var subjects: Int = Catalogue.subjects.count

    func validate() throws {
        guard (1...999_999).contains(students) else { throw ValidationError("--students must be 1 to 999999.") }
        guard (1...Catalogue.subjects.count).contains(subjects) else { throw ValidationError("--subjects must be 1 to \(Catalogue.subjects.count).") }
        guard !urls.split(separator: ",").compactMap({ Endpoint(parsing: String($0)) }).isEmpty else {
            throw ValidationError("--url must be http://HOST:PORT (comma-separated for several); got '\(urls)'.")
        }
    }

    func run() async throws {
        let endpoints = urls.split(separator: ",").compactMap { Endpoint(parsing: String($0)) }
        let seeded = try await Seeder(endpoints: endpoints).seed(students: students, subjects: subjects)
        say("seeded \(seeded.subjects) subjects and \(seeded.students) students")
    }
}

/// Loads the catalogue and the students over the HTTP API; running it again rewrites
/// the same records and leaves enrolments alone.
struct Seeder {
    let endpoints: [Endpoint]

    func seed(students: Int, subjects: Int) async throws -> (subjects: Int, students: Int) {
        let client = RingstoreHTTPClient(endpoints: endpoints, timeout: .seconds(10))
        func send(_ method: String, _ path: String, _ body: [UInt8], accept: Set<Int>) async throws {
            var lastStatus = 0
            for attempt in 0..<30 {
                if let reply = try? await client.send(method: method, path: path, headers: [("Content-Type", "application/json")], body: body) {
                    if accept.contains(reply.status) { return }
                    lastStatus = reply.status
                    guard reply.status >= 500 else {
                        throw ValidationError("\(method) \(path) answered \(reply.status): \(String(decoding: reply.body, as: UTF8.self))")
                    }
                }
                try await Task.sleep(for: .milliseconds(100 * min(attempt + 1, 10)))
            }
            throw ValidationError("\(method) \(path) kept failing (last status \(lastStatus)); is the cluster up?")
        }
        try await send("PUT", "/v1/tables/\(EnrolmentTables.catalog)", Array("{}".utf8), accept: [200, 201])
        try await send("PUT", "/v1/tables/\(EnrolmentTables.students)", Array("{}".utf8), accept: [200, 201])
        try await send("PUT", "/v1/tables/\(EnrolmentTables.enrolment)", Array(#"{"consistency":"linearizable"}"#.utf8), accept: [200, 201])
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let catalogue = Array(try encoder.encode(Array(Catalogue.subjects.prefix(subjects))))
        try await send("PUT", "/v1/kv/\(EnrolmentTables.catalog)/\(EnrolmentTables.catalogKey)", catalogue, accept: [204])
        // Students in parallel batches; each record is small.
        let ids = (1...students).map { Catalogue.studentID($0) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<16 {
                group.addTask {
                    for index in stride(from: lane, to: ids.count, by: 16) {
                        let student = Catalogue.student(index + 1)
                        try await send("PUT", "/v1/kv/\(EnrolmentTables.students)/\(student.id)", Array(try encoder.encode(student)), accept: [204])
                    }
                }
            }
            try await group.waitForAll()
        }
        client.closeIdleConnections()
        return (subjects, students)
    }
}

/// The demo catalogue and students: the same on every run.
enum Catalogue {
    static func studentID(_ number: Int) -> String { "s" + String(1_000_000 + number) }

    static func student(_ number: Int) -> Student {
        let given = ["Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "John", "Katherine", "Leslie", "Margaret", "Niklaus", "Radia", "Tony", "Hedy", "Ken", "Sophie", "Tim", "Shafi", "Whitfield"]
        let family = ["Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "McCarthy", "Johnson", "Lamport", "Hamilton", "Wirth", "Perlman", "Hoare", "Lamarr", "Thompson", "Wilson", "Berners-Lee", "Goldwasser", "Diffie"]
        let programs = ["Computer Science", "Software Engineering", "Data Science", "Mathematics", "Electrical Engineering", "Information Systems"]
        let name = "\(given[number % given.count]) \(family[(number / given.count) % family.count])"
        return Student(id: studentID(number), name: name, program: programs[number % programs.count])
    }

    /// About 40 subjects over two terms, Monday to Friday; some meet at the same
    /// time (to clash), and a few popular ones are small (to fill up).
    static let subjects: [Subject] = [
        Subject(code: "COMP1000", title: "Introduction to Programming", term: "T1", day: "Mon", start: "09:00", end: "11:00", capacity: 120),
        Subject(code: "COMP1100", title: "Data Structures", term: "T1", day: "Tue", start: "09:00", end: "11:00", capacity: 100),
        Subject(code: "COMP1200", title: "Discrete Mathematics", term: "T1", day: "Wed", start: "10:00", end: "12:00", capacity: 90),
        Subject(code: "COMP1300", title: "Computer Systems", term: "T1", day: "Thu", start: "09:00", end: "11:00", capacity: 80),
        Subject(code: "COMP1400", title: "Web Development", term: "T1", day: "Mon", start: "10:00", end: "12:00", capacity: 60),
        Subject(code: "COMP2000", title: "Algorithms", term: "T1", day: "Mon", start: "13:00", end: "15:00", capacity: 80),
        Subject(code: "COMP2100", title: "Databases", term: "T1", day: "Tue", start: "13:00", end: "15:00", capacity: 70),
        Subject(code: "COMP2200", title: "Operating Systems", term: "T1", day: "Wed", start: "13:00", end: "15:00", capacity: 60),
        Subject(code: "COMP2300", title: "Computer Networks", term: "T1", day: "Thu", start: "13:00", end: "15:00", capacity: 60),
        Subject(code: "COMP2400", title: "Software Engineering", term: "T1", day: "Fri", start: "09:00", end: "11:00", capacity: 70),
        Subject(code: "COMP3000", title: "Distributed Systems", term: "T1", day: "Fri", start: "13:00", end: "15:00", capacity: 30),
        Subject(code: "COMP3100", title: "Machine Learning", term: "T1", day: "Mon", start: "15:00", end: "17:00", capacity: 40),
        Subject(code: "COMP3200", title: "Computer Security", term: "T1", day: "Tue", start: "15:00", end: "17:00", capacity: 40),
        Subject(code: "COMP3300", title: "Compilers", term: "T1", day: "Wed", start: "15:00", end: "17:00", capacity: 30),
        Subject(code: "COMP3400", title: "Human-Computer Interaction", term: "T1", day: "Thu", start: "15:00", end: "17:00", capacity: 35),
        Subject(code: "COMP3500", title: "Cloud Computing", term: "T1", day: "Fri", start: "15:00", end: "17:00", capacity: 25),
        Subject(code: "MATH1000", title: "Calculus", term: "T1", day: "Tue", start: "10:00", end: "12:00", capacity: 150),
        Subject(code: "MATH1100", title: "Linear Algebra", term: "T1", day: "Thu", start: "11:00", end: "13:00", capacity: 120),
        Subject(code: "MATH2000", title: "Probability", term: "T1", day: "Wed", start: "09:00", end: "11:00", capacity: 90),
        Subject(code: "MATH2100", title: "Statistics", term: "T1", day: "Fri", start: "11:00", end: "13:00", capacity: 90),
        Subject(code: "DATA2000", title: "Data Visualisation", term: "T1", day: "Mon", start: "17:00", end: "19:00", capacity: 20),
        Subject(code: "DATA3000", title: "Big Data Systems", term: "T1", day: "Wed", start: "17:00", end: "19:00", capacity: 20),
        Subject(code: "COMP1001", title: "Introduction to Programming", term: "T2", day: "Mon", start: "09:00", end: "11:00", capacity: 100),
        Subject(code: "COMP1101", title: "Object-Oriented Design", term: "T2", day: "Tue", start: "09:00", end: "11:00", capacity: 90),
        Subject(code: "COMP2001", title: "Functional Programming", term: "T2", day: "Wed", start: "09:00", end: "11:00", capacity: 50),
        Subject(code: "COMP2101", title: "Concurrency", term: "T2", day: "Thu", start: "09:00", end: "11:00", capacity: 50),
        Subject(code: "COMP2201", title: "Computer Graphics", term: "T2", day: "Fri", start: "09:00", end: "11:00", capacity: 45),
        Subject(code: "COMP3001", title: "Storage Systems", term: "T2", day: "Mon", start: "13:00", end: "15:00", capacity: 30),
        Subject(code: "COMP3101", title: "Natural Language Processing", term: "T2", day: "Tue", start: "13:00", end: "15:00", capacity: 40),
        Subject(code: "COMP3201", title: "Formal Methods", term: "T2", day: "Wed", start: "13:00", end: "15:00", capacity: 25),
        Subject(code: "COMP3301", title: "Robotics", term: "T2", day: "Thu", start: "13:00", end: "15:00", capacity: 25),
        Subject(code: "COMP3401", title: "Computer Vision", term: "T2", day: "Fri", start: "13:00", end: "15:00", capacity: 30),
        Subject(code: "COMP3501", title: "Capstone Project", term: "T2", day: "Mon", start: "15:00", end: "18:00", capacity: 60),
        Subject(code: "MATH1001", title: "Calculus II", term: "T2", day: "Tue", start: "11:00", end: "13:00", capacity: 120),
        Subject(code: "MATH2001", title: "Optimisation", term: "T2", day: "Wed", start: "11:00", end: "13:00", capacity: 60),
        Subject(code: "MATH2101", title: "Numerical Methods", term: "T2", day: "Thu", start: "11:00", end: "13:00", capacity: 60),
        Subject(code: "STAT2001", title: "Bayesian Statistics", term: "T2", day: "Fri", start: "11:00", end: "13:00", capacity: 40),
        Subject(code: "ENGG1001", title: "Engineering Design", term: "T2", day: "Mon", start: "10:00", end: "12:00", capacity: 80),
        Subject(code: "ENGG2001", title: "Signals and Systems", term: "T2", day: "Tue", start: "15:00", end: "17:00", capacity: 60),
        Subject(code: "ETHC1001", title: "Ethics in Computing", term: "T2", day: "Thu", start: "16:00", end: "18:00", capacity: 200),
    ]
}
