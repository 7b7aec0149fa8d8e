import ArgumentParser

/// `ringstore bench`: load generators and micro-benchmarks.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure Ringstore.",
        subcommands: [StorageBenchCommand.self, StorageReopenCommand.self, HTTPBaselineCommand.self, ClientBenchCommand.self, RushBenchCommand.self]
    )
}
