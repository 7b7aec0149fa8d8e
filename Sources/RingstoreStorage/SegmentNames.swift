/// File names inside a data folder: `000000000042.seg`, `000000000042.hint`, `MERGE`, `LOCK`.
enum SegmentNames {
    static func segmentPath(_ directory: String, _ id: UInt32) -> String { "\(directory)/\(padded(id)).seg" }
    static func hintPath(_ directory: String, _ id: UInt32) -> String { "\(directory)/\(padded(id)).hint" }
    static func mergeManifestPath(_ directory: String) -> String { "\(directory)/MERGE" }

    /// The segment id in a file name, if it is a segment (`.seg`) file.
    static func segmentID(fromFileName name: String) -> UInt32? {
        guard name.hasSuffix(".seg") else { return nil }
        return UInt32(name.dropLast(4))
    }

    private static func padded(_ id: UInt32) -> String {
        let digits = String(id)
        return String(repeating: "0", count: max(0, 12 - digits.count)) + digits
    }
}
