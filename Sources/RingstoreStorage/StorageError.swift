#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a storage operation failed.
public enum StorageError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file system has no room; nothing was written. Retrying once space returns succeeds.
    case diskFull
    /// A system call failed with `errno`.
    case io(operation: String, path: String, errno: Int32)
    /// The record behind a key failed its checksum; it is not served.
    case corruptRecord(segment: UInt32, offset: Int)
    /// Another process holds the data folder.
    case locked(path: String)
    /// An fsync failed earlier; the engine refuses writes because it cannot know what reached the disk.
    case failed(reason: String)
    /// The engine was closed.
    case closed
    /// A key or value is larger than a record can hold.
    case recordTooLarge(keyBytes: Int, valueBytes: Int)

    public var description: String {
        switch self {
        case .diskFull: "no space left on the device"
        case .io(let operation, let path, let code): "\(operation) \(path) failed: \(String(cString: strerror(code)))"
        case .corruptRecord(let segment, let offset): "record at segment \(segment) offset \(offset) failed its checksum"
        case .locked(let path): "the data folder \(path) is in use by another process"
        case .failed(let reason): "storage refuses writes after an earlier failure: \(reason)"
        case .closed: "the storage engine is closed"
        case .recordTooLarge(let keyBytes, let valueBytes): "a record of a \(keyBytes)-byte key and a \(valueBytes)-byte value is too large"
        }
    }

    /// Builds the error for a failed system call from the current `errno`.
    static func system(_ operation: String, _ path: String) -> StorageError {
        let code = errno
        if code == ENOSPC || code == EDQUOT { return .diskFull }
        return .io(operation: operation, path: path, errno: code)
    }
}
