/// A condition on the current value that a put or delete requires, as HTTP's
/// `If-Match` and `If-None-Match: *` express it.
public enum LinearizablePrecondition: Hashable, Sendable {
    /// No condition.
    case none
    /// The key exists (not deleted) and its version is this one (`If-Match`).
    case ifMatch(version: UInt64)
    /// The key exists, whatever its version (`If-Match: *`).
    case ifExists
    /// The key does not exist or was deleted (`If-None-Match: *`).
    case ifNoneMatch

    /// Whether `current` satisfies the condition.
    public func isSatisfied(by current: LinearizableValue?) -> Bool {
        switch self {
        case .none: true
        case .ifMatch(let version): current.map { $0.exists && $0.version == version } ?? false
        case .ifExists: current?.exists ?? false
        case .ifNoneMatch: !(current?.exists ?? false)
        }
    }
}

/// Why a change was refused. Every case carries the numbers a client needs; the
/// HTTP layer answers `preconditionFailed` with 412 and the rest with 409.
public enum LinearizableRefusal: Hashable, Sendable {
    /// The precondition did not hold.
    case preconditionFailed
    /// The change needs a value of kind `expected` and the key holds `found`.
    case wrongKind(expected: LinearizableKind, found: LinearizableKind)
    /// Adding `delta` to `value` would leave `min...max` (or overflow 64 bits).
    case counterOutOfBounds(value: Int64, delta: Int64, min: Int64, max: Int64)
    /// Adding a member would make the set larger than `cap`.
    case setFull(count: Int, cap: Int)
    /// The member is longer than `CASPaxosLimits.setMemberBytesMax`.
    case memberTooLong(bytes: Int, max: Int)
    /// The set holds `member`, one of those the addition was to be refused for.
    case conflictingMember(String)
}

/// What applying a change to a value produced.
public enum LinearizableOutcome: Hashable, Sendable {
    /// The change applied; the key's value is now this one (for a read, or a change
    /// that changed nothing, the value as it was).
    case applied(LinearizableValue?)
    /// The change was refused; `current` is the value it saw, unchanged.
    case refused(LinearizableRefusal, current: LinearizableValue?)
}

/// One change to a linearizable key: the function CASPaxos applies to the value
/// the prepare phase found. Applying it is deterministic and total: it returns a
/// new value or a refusal with the current value, and never traps.
public enum LinearizableChange: Hashable, Sendable {
    /// Reads the value (the identity).
    case read
    /// Writes bytes if the precondition holds.
    case put(contentType: String, data: [UInt8], precondition: LinearizablePrecondition)
    /// Deletes the value if the precondition holds. Deleting an absent key changes nothing.
    case delete(precondition: LinearizablePrecondition)
    /// Adds `delta` to a counter (an absent key counts as 0), refusing instead of
    /// leaving `min...max`.
    case counterAdd(delta: Int64, min: Int64, max: Int64)
    /// Adds a member to a set (an absent key counts as empty), refusing when the set
    /// already holds `cap` members. Adding a member already present changes nothing.
    case setAdd(member: String, cap: Int)
    /// Adds a member as `setAdd` does, unless the set holds one of `conflicts`
    /// (refused with `conflictingMember`): the check and the addition are one step,
    /// so two concurrent additions of members that exclude each other cannot both
    /// succeed.
    case setAddUnless(member: String, cap: Int, conflicts: [String])
    /// Removes a member from a set. Removing a member not present changes nothing.
    case setRemove(member: String)
    /// Several changes applied one after another in one operation, each to the value
    /// the previous one left (a refused change leaves it as it was). The outcome of
    /// each is `outcomes(from:)` of the value the batch started from.
    indirect case batch([LinearizableChange])

    /// Whether the change can alter a value; a read (or a batch of reads) cannot.
    public var isRead: Bool {
        if case .batch(let changes) = self { return changes.allSatisfy(\.isRead) }
        return self == .read
    }

    /// The outcome of each change of a batch applied from `start`, in order; for any
    /// other change, its own outcome.
    public func outcomes(from start: LinearizableValue?) -> [LinearizableOutcome] {
        guard case .batch(let changes) = self else { return [apply(to: start)] }
        var value = start
        return changes.map { change in
            let outcome = change.apply(to: value)
            if case .applied(let next) = outcome { value = next }
            return outcome
        }
    }

    /// Applies the change to `current`. The version grows by one exactly when the
    /// value changes.
    public func apply(to current: LinearizableValue?) -> LinearizableOutcome {
        let version = current?.version ?? 0
        let live = current.flatMap { $0.exists ? $0.content : nil }
        func changed(_ content: LinearizableContent) -> LinearizableOutcome {
            .applied(LinearizableValue(version: Swift.min(version, CASPaxosLimits.versionMax - 1) + 1, content: content))
        }
        func refused(_ reason: LinearizableRefusal) -> LinearizableOutcome {
            .refused(reason, current: current)
        }
        switch self {
        case .batch:
            var value = current
            for outcome in outcomes(from: current) {
                if case .applied(let next) = outcome { value = next }
            }
            return .applied(value)
        case .read:
            return .applied(current)
        case .put(let contentType, let data, let precondition):
            guard precondition.isSatisfied(by: current) else { return refused(.preconditionFailed) }
            return changed(.bytes(contentType: contentType, data: data))
        case .delete(let precondition):
            guard precondition.isSatisfied(by: current) else { return refused(.preconditionFailed) }
            return live == nil ? .applied(current) : changed(.deleted)
        case .counterAdd(let delta, let min, let max):
            let value: Int64
            switch live {
            case nil: value = 0
            case .counter(let existing): value = existing
            case let other?: return refused(.wrongKind(expected: .counter, found: other.kind ?? .bytes))
            }
            let (sum, overflow) = value.addingReportingOverflow(delta)
            guard !overflow, min <= sum, sum <= max else {
                return refused(.counterOutOfBounds(value: value, delta: delta, min: min, max: max))
            }
            return delta == 0 && live != nil ? .applied(current) : changed(.counter(sum))
        case .setAdd(let member, let cap):
            return LinearizableChange.setAddUnless(member: member, cap: cap, conflicts: []).apply(to: current)
        case .setAddUnless(let member, let cap, let conflicts):
            guard member.utf8.count <= CASPaxosLimits.setMemberBytesMax else {
                return refused(.memberTooLong(bytes: member.utf8.count, max: CASPaxosLimits.setMemberBytesMax))
            }
            let members: [String]
            switch live {
            case nil: members = []
            case .set(let existing): members = existing
            case let other?: return refused(.wrongKind(expected: .set, found: other.kind ?? .bytes))
            }
            let index = Self.insertionIndex(of: member, in: members)
            if index < members.count, members[index] == member { return .applied(current) }
            if let conflict = conflicts.first(where: { Self.contains($0, in: members) }) {
                return refused(.conflictingMember(conflict))
            }
            guard members.count < Swift.min(cap, CASPaxosLimits.setMembersMax) else {
                return refused(.setFull(count: members.count, cap: cap))
            }
            var added = members
            added.insert(member, at: index)
            return changed(.set(added))
        case .setRemove(let member):
            switch live {
            case nil: return .applied(current)
            case .set(let members):
                let index = Self.insertionIndex(of: member, in: members)
                guard index < members.count, members[index] == member else { return .applied(current) }
                var removed = members
                removed.remove(at: index)
                return changed(.set(removed))
            case let other?: return refused(.wrongKind(expected: .set, found: other.kind ?? .bytes))
            }
        }
    }

    private static func contains(_ member: String, in members: [String]) -> Bool {
        let index = insertionIndex(of: member, in: members)
        return index < members.count && members[index] == member
    }

    /// The first index whose member is not below `member` (binary search).
    private static func insertionIndex(of member: String, in members: [String]) -> Int {
        var low = 0
        var high = members.count
        while low < high {
            let middle = (low + high) / 2
            if members[middle] < member { low = middle + 1 } else { high = middle }
        }
        return low
    }
}
