import ArgumentParser

@main
struct Ringstore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ringstore",
        abstract: "A Dynamo-style distributed key-value store.",
        subcommands: [DevCommand.self, RingCommand.self, NodeCommand.self, AdminCommand.self, PutCommand.self, GetCommand.self, DeleteCommand.self, SeedCommand.self, BenchCommand.self]
    )
}
