import ArgumentParser

/// `ringstore bench`: load generators and micro-benchmarks.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure Ringstore.",
        subcommands: [LoadBenchCommand.self, RushBenchCommand.self, StorageBenchCommand.self, StorageReopenCommand.self, HTTPBaselineCommand.self],
        defaultSubcommand: LoadBenchCommand.self
    )
}
