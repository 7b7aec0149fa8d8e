import Testing
@testable import RingstoreCore

@Suite struct PercentDecodingTests {
    // Proves %XX in either case becomes its byte and every other byte passes through, '+' included.
    @Test(arguments: [
        ("hello", Array("hello".utf8)),
        ("", []),
        ("%41%62", Array("Ab".utf8)),
        ("%e2%82%AC", Array("€".utf8)),
        ("a+b", Array("a+b".utf8)),
        ("a%2Fb%20c", Array("a/b c".utf8)),
        ("%00%ff", [0x00, 0xff]),
        ("é%25", Array("é%".utf8)),
    ])
    func decodes(text: String, expected: [UInt8]) throws {
        #expect(try Validation.percentDecode(text) == expected)
    }

    // Proves a '%' not followed by two hex digits throws with the whole text.
    @Test(arguments: ["%", "%4", "100%", "%zz", "%4g", "a%g1", "%%41", "%-1"])
    func malformedThrows(text: String) {
        #expect(throws: InputError.malformedPercentEncoding(text)) { try Validation.percentDecode(text) }
    }

    // Proves a Substring decodes like the String it came from.
    @Test func acceptsSubstrings() throws {
        let path = "/v1/kv/default/caf%C3%A9"
        let key = path.split(separator: "/").last!
        #expect(try Validation.percentDecode(key) == Array("café".utf8))
    }
}
