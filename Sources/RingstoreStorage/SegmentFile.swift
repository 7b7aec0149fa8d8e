#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An open segment file. Readers keep a reference while they read, so a merge may
/// unlink the file underneath them: the descriptor closes when the last reference goes.
final class SegmentFile: @unchecked Sendable {
    let id: UInt32
    let path: String
    let descriptor: Int32

    private init(id: UInt32, path: String, descriptor: Int32) {
        self.id = id
        self.path = path
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }

    /// Opens an existing segment for reading and writing.
    static func open(id: UInt32, path: String) throws(StorageError) -> SegmentFile {
        let descriptor = Glibc.open(path, O_RDWR | O_CLOEXEC)
        guard descriptor >= 0 else { throw .system("open", path) }
        return SegmentFile(id: id, path: path, descriptor: descriptor)
    }

    /// Creates a new, empty segment; fails if the file exists.
    static func create(id: UInt32, path: String) throws(StorageError) -> SegmentFile {
        let descriptor = Glibc.open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw .system("create", path) }
        return SegmentFile(id: id, path: path, descriptor: descriptor)
    }

    /// The file's current size in bytes.
    func size() throws(StorageError) -> Int {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw .system("fstat", path) }
        return Int(info.st_size)
    }

    /// Reads exactly `count` bytes at `offset`; fewer only at the end of the file.
    func read(offset: Int, count: Int) throws(StorageError) -> [UInt8] {
        var failure: StorageError?
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            var done = 0
            while done < count {
                let got = pread(descriptor, buffer.baseAddress! + done, count - done, off_t(offset + done))
                if got < 0 {
                    if errno == EINTR { continue }
                    failure = .system("read", path)
                    break
                }
                if got == 0 { break }
                done += got
            }
            initialized = done
        }
        if let failure { throw failure }
        return bytes
    }

    /// Reads the whole file.
    func readAll() throws(StorageError) -> [UInt8] {
        try read(offset: 0, count: try size())
    }

    /// Writes all of `bytes` at `offset`.
    func write(_ bytes: [UInt8], at offset: Int) throws(StorageError) {
        var failure: StorageError?
        bytes.withUnsafeBytes { buffer in
            var done = 0
            while done < buffer.count {
                let wrote = pwrite(descriptor, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
                if wrote < 0 {
                    if errno == EINTR { continue }
                    failure = .system("write", path)
                    return
                }
                done += wrote
            }
        }
        if let failure { throw failure }
    }

    /// Writes zeros over `range`, extending the file when the range ends past it.
    func writeZeros(_ range: Range<Int>) throws(StorageError) {
        var offset = range.lowerBound
        while offset < range.upperBound {
            let count = min(range.upperBound - offset, Self.zeros.count)
            try write(count == Self.zeros.count ? Self.zeros : Array(Self.zeros[..<count]), at: offset)
            offset += count
        }
    }

    private static let zeros = [UInt8](repeating: 0, count: 64 << 10)

    /// Forces the file's data to the device.
    func sync() throws(StorageError) {
        guard fdatasync(descriptor) == 0 else { throw .system("fdatasync", path) }
    }

    /// Cuts the file to `size` bytes.
    func truncate(to size: Int) throws(StorageError) {
        guard ftruncate(descriptor, off_t(size)) == 0 else { throw .system("ftruncate", path) }
    }
}

/// File-system helpers the engine needs beyond one file.
enum FileSystem {
    static func fileExists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// Creates a directory and any missing parents.
    static func createDirectory(_ path: String) throws(StorageError) {
        if mkdir(path, 0o755) == 0 || errno == EEXIST { return }
        guard errno == ENOENT, let slash = path.lastIndex(of: "/"), slash != path.startIndex else { throw .system("mkdir", path) }
        try createDirectory(String(path[..<slash]))
        if mkdir(path, 0o755) != 0 && errno != EEXIST { throw .system("mkdir", path) }
    }

    /// Names of the entries of a directory.
    static func list(_ path: String) throws(StorageError) -> [String] {
        guard let directory = opendir(path) else { throw .system("opendir", path) }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Makes a directory's entries (new, renamed, removed files) durable.
    static func syncDirectory(_ path: String) throws(StorageError) {
        let descriptor = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw .system("open", path) }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw .system("fsync", path) }
    }

    static func remove(_ path: String) {
        unlink(path)
    }

    static func rename(_ from: String, _ to: String) throws(StorageError) {
        guard Glibc.rename(from, to) == 0 else { throw .system("rename", from) }
    }

    /// Writes `bytes` to `path` durably and atomically: a temporary file, fsync, rename.
    static func writeAtomically(_ bytes: [UInt8], to path: String, directory: String) throws(StorageError) {
        let temporary = path + ".tmp"
        remove(temporary)
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw .system("create", temporary) }
        var failure: StorageError?
        bytes.withUnsafeBytes { buffer in
            var done = 0
            while done < buffer.count {
                let wrote = Glibc.write(descriptor, buffer.baseAddress! + done, buffer.count - done)
                if wrote < 0 {
                    if errno == EINTR { continue }
                    failure = .system("write", temporary)
                    return
                }
                done += wrote
            }
        }
        if failure == nil && fsync(descriptor) != 0 { failure = .system("fsync", temporary) }
        close(descriptor)
        if let failure {
            remove(temporary)
            throw failure
        }
        try rename(temporary, path)
        try syncDirectory(directory)
    }

    /// Takes an exclusive advisory lock on `path` for the life of the returned descriptor.
    static func lockExclusively(_ path: String) throws(StorageError) -> Int32 {
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw .system("open", path) }
        if flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            close(descriptor)
            throw .locked(path: path)
        }
        return descriptor
    }
}

/// Small files that must survive a crash whole or not at all (a process's state
/// file): written to a temporary file, synced, renamed over the old one, and the
/// folder synced.
public enum DurableFile {
    /// Replaces the file at `path` with `bytes`, durably and atomically.
    public static func replace(path: String, with bytes: [UInt8]) throws(StorageError) {
        let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        try FileSystem.writeAtomically(bytes, to: path, directory: directory.isEmpty ? "/" : directory)
    }
}
