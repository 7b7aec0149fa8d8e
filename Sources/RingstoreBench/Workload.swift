/// The operations a load mixes, YCSB's core workloads plus a write-only and a
/// compare-and-set one.
public enum Workload: String, Sendable, CaseIterable, Codable {
    /// 50% reads, 50% updates (YCSB A, "update heavy").
    case a
    /// 95% reads, 5% updates (YCSB B, "read mostly").
    case b
    /// Reads only (YCSB C).
    case c
    /// Updates only.
    case w
    /// Linearizable read-modify-writes only: a counter add (`POST …/add?delta=1`) on
    /// a linearizable table, which the key's leader runs as one CASPaxos round.
    case cas

    /// The share of reads among the operations.
    public var readFraction: Double {
        switch self {
        case .a: 0.5
        case .b: 0.95
        case .c: 1
        case .w, .cas: 0
        }
    }

    /// Whether the workload needs a linearizable table.
    public var isLinearizable: Bool { self == .cas }

    /// The operation for a uniform draw `u` in [0, 1).
    public func operation(_ u: Double) -> Operation {
        if self == .cas { return .cas }
        return u < readFraction ? .read : .update
    }

    public var summary: String {
        switch self {
        case .a: "A: 50% read, 50% update"
        case .b: "B: 95% read, 5% update"
        case .c: "C: read only"
        case .w: "W: update only"
        case .cas: "CAS: linearizable counter add only"
        }
    }
}

/// One kind of request a load sends.
public enum Operation: String, Sendable, CaseIterable, Codable, Hashable {
    case read, update, cas
}
