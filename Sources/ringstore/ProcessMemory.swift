#if canImport(Glibc)
import Glibc
#endif

/// Keeps a server process's resident size close to what it holds.
///
/// glibc's allocator gives each thread that meets contention an arena of its own and
/// keeps freed memory in the arenas; a node that had just taken a million writes
/// held 221 MiB, of which `malloc_trim` returned 25 MiB, and with at most two arenas
/// it held 188 MiB (179 MiB trimmed). bench/results/memory-2026-11-27.md has the runs.
enum ProcessMemory {
    /// At most two arenas (best called before the process starts its threads), and a
    /// trim of the allocator's free memory every `interval` until the task is cancelled.
    static func manage(trimmingEvery interval: Duration = .seconds(10)) -> Task<Void, Never> {
        // mallopt and malloc_trim are glibc's (malloc.h), which the Glibc module leaves out.
        if let mallopt = symbol("mallopt", as: (@convention(c) (Int32, Int32) -> Int32).self) {
            let arenaMax: Int32 = -8  // M_ARENA_MAX
            _ = mallopt(arenaMax, 2)
        }
        let trim = symbol("malloc_trim", as: (@convention(c) (Int) -> Int32).self)
        return Task.detached(priority: .background) {
            guard let trim else { return }
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                _ = trim(0)
            }
        }
    }

    private static func symbol<Function>(_ name: String, as type: Function.Type) -> Function? {
        #if canImport(Glibc)
        guard let address = dlsym(nil, name) else { return nil }
        return unsafeBitCast(address, to: type)
        #else
        return nil
        #endif
    }
}
