import ArgumentParser

@main
struct Ringstore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ringstore",
        abstract: "A Dynamo-style distributed key-value store.",
        subcommands: [DevCommand.self, NodeCommand.self, PutCommand.self, GetCommand.self, DeleteCommand.self, BenchCommand.self]
    )
}
