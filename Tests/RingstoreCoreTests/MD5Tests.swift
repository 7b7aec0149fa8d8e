import Testing
@testable import RingstoreCore

@Suite struct MD5Tests {
    // Proves the digest matches every test vector of RFC 1321 appendix A.5.
    @Test(arguments: [
        ("", "d41d8cd98f00b204e9800998ecf8427e"),
        ("a", "0cc175b9c0f1b6a831c399e269772661"),
        ("abc", "900150983cd24fb0d6963f7d28e17f72"),
        ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
        ("abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"),
        ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", "d174ab98d277d9f5a5611c2c9f419d9f"),
        (String(repeating: "1234567890", count: 8), "57edf4a22be3c955ac49da2e2107b67a"),
    ])
    func rfc1321Vectors(input: String, expected: String) {
        #expect(hexString(MD5.digest(Array(input.utf8))) == expected)
    }

    // Proves padding is right at every block boundary (lengths around 56 and 64 bytes), against python3's hashlib.
    @Test(arguments: [
        (55, "52c0e574e1198de5fe3f8f11440dcb1b"),
        (56, "46c9907fc908ee68b1e7b8e71286a518"),
        (57, "1c805dd236c35cab25fcb1bc73802c51"),
        (63, "a62f6d59e837867693f042f5b8f5a236"),
        (64, "7160b8fb5e9e4023d549c3971fbaeead"),
        (65, "70bd662e7aefbda85a0f7244167b7897"),
        (119, "e84905d4214f4d1ca56c2cdcc152b143"),
        (120, "e3eb5a6c8669ea01a8c185b8abc8a5dc"),
        (128, "10b2da1a82f16d99a81a7203fe9f02cb"),
    ])
    func blockBoundaries(length: Int, expected: String) {
        let input = (0..<length).map { UInt8(($0 * 7 + 3) % 256) }
        #expect(hexString(MD5.digest(input)) == expected)
    }

    // Proves a multi-block input (1000 bytes, 16 blocks) digests correctly, against python3's hashlib.
    @Test func multiBlockInput() {
        let input = (0..<1000).map { UInt8($0 % 251) }
        #expect(hexString(MD5.digest(input)) == "a24f1e3ef66950e1327f210e3997ba2c")
    }

    // Proves any collection of bytes gives the same digest as the equivalent array.
    @Test func acceptsAnyByteCollection() {
        let text = "message digest"
        let expected = MD5.digest(Array(text.utf8))
        #expect(MD5.digest(text.utf8) == expected)
        #expect(MD5.digest(Array("xxmessage digestyy".utf8)[2..<16]) == expected)
        #expect(MD5.digest(text.utf8.lazy.map { $0 }) == expected, "a collection without contiguous storage")
        #expect(hexString(MD5.digest(repeatElement(UInt8(ascii: "a"), count: 1))) == "0cc175b9c0f1b6a831c399e269772661")
        #expect(expected.count == 16)
    }
}
