import RingstoreCore
import Synchronization

/// What `/v1/cluster…` shows: the members, the ring, where a key lives.
public protocol ClusterView: Sendable {
    /// `GET /v1/cluster`.
    func clusterJSON() -> String
    /// `GET /v1/cluster/ring`.
    func ringJSON() -> String
    /// `GET /v1/cluster/locate/{table}/{key}`.
    func locateJSON(table: TableDefinition, key: [UInt8]) -> String
}

/// The view of a node that is a cluster of one.
struct SingleNodeView: ClusterView {
    let partitioning: Partitioning
    let actor: String

    func clusterJSON() -> String {
        "{\"mode\":\"single\",\"node\":\"local\",\"partitions\":\(partitioning.partitionCount),\"members\":[{\"id\":\"local\",\"reachable\":true}]}"
    }

    /// A node alone serves no node protocol: its one member has no RPC address, so
    /// partition-aware clients use HTTP.
    func ringJSON() -> String {
        let owners = Array(repeating: "\"local\"", count: partitioning.partitionCount).joined(separator: ",")
        return "{\"partitions\":\(partitioning.partitionCount),\"epoch\":0,\"owners\":[\(owners)],\"members\":[{\"id\":\"local\",\"rpc\":\"\",\"http\":\"\"}]}"
    }

    func locateJSON(table: TableDefinition, key: [UInt8]) -> String {
        let partition = partitioning.partition(table: table.name, key: key)
        return LocateJSON.render(table: table.name, key: key, partition: partition, preference: ["local"], targets: [("local", nil)], unreachable: [])
    }
}

/// The view of a member of a cluster.
struct ClusterNodeView: ClusterView {
    let node: ClusterNode

    func clusterJSON() -> String {
        let (members, unreachable, hints) = node.membership
        let addresses = node.addresses
        let items = members.map { member in
            let address = addresses.first { $0.id == member }.map { "\($0.host):\($0.port)" } ?? ""
            return "{\"id\":\(JSONText.quote(member.rawValue)),\"rpc\":\(JSONText.quote(address)),\"reachable\":\(member == node.id || !unreachable.contains(member))}"
        }
        let epoch = node.engine.withLock { $0.ring.epoch }
        return "{\"mode\":\"static\",\"node\":\(JSONText.quote(node.id.rawValue)),\"partitions\":\(node.partitioning.partitionCount),\"ring_epoch\":\(epoch),\"hints_pending\":\(hints),\"members\":[\(items.joined(separator: ","))]}"
    }

    /// The ring and how to reach its members, for partition-aware clients. A static
    /// node knows its peers' RPC addresses only, so `http` is empty.
    func ringJSON() -> String {
        let ring = node.engine.withLock { $0.ring }
        let owners = ring.owners.map { JSONText.quote($0.rawValue) }.joined(separator: ",")
        let members = node.addresses.map { member in
            let host = member.host.contains(":") ? "[\(member.host)]" : member.host
            return "{\"id\":\(JSONText.quote(member.id.rawValue)),\"rpc\":\(JSONText.quote("\(host):\(member.port)")),\"http\":\"\"}"
        }.joined(separator: ",")
        return "{\"partitions\":\(ring.partitioning.partitionCount),\"epoch\":\(ring.epoch),\"owners\":[\(owners)],\"members\":[\(members)]}"
    }

    func locateJSON(table: TableDefinition, key: [UInt8]) -> String {
        let item = ItemKey(table: table.name, key: key, partitioning: node.partitioning)
        let (preference, targets, unreachable) = node.locate(item, n: table.n)
        return LocateJSON.render(
            table: table.name, key: key, partition: item.partition, preference: preference.map(\.rawValue),
            targets: targets.map { ($0.node.rawValue, $0.hintFor?.rawValue) }, unreachable: unreachable.map(\.rawValue).sorted())
    }
}

enum LocateJSON {
    static func render(
        table: String, key: [UInt8], partition: PartitionID, preference: [String], targets: [(String, String?)], unreachable: [String]
    ) -> String {
        let list = preference.map(JSONText.quote).joined(separator: ",")
        let targetItems = targets.map { node, hintFor in
            "{\"node\":\(JSONText.quote(node)),\"hint_for\":\(hintFor.map(JSONText.quote) ?? "null")}"
        }.joined(separator: ",")
        let down = unreachable.map(JSONText.quote).joined(separator: ",")
        return "{\"table\":\(JSONText.quote(table)),\"key\":\(JSONText.quote(String(decoding: key, as: UTF8.self))),\"partition\":\(partition.rawValue),\"preference_list\":[\(list)],\"targets\":[\(targetItems)],\"unreachable\":[\(down)]}"
    }
}
