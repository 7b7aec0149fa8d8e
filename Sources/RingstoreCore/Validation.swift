/// Why a request's key, table name or value was refused.
///
/// Each case carries the numbers a user needs to fix the request; `code` is the
/// stable machine-readable string that appears in the JSON error body.
public enum InputError: Error, Equatable, Sendable {
    case emptyKey
    case keyTooLong(bytes: Int, max: Int)
    case keyNotUTF8
    case invalidTableName(String)
    case valueTooLarge(bytes: Int, max: Int)
    case contentTypeTooLong(bytes: Int, max: Int)
    case malformedPercentEncoding(String)

    /// The stable error code used in the JSON error body.
    public var code: String {
        switch self {
        case .emptyKey: "empty_key"
        case .keyTooLong: "key_too_long"
        case .keyNotUTF8: "key_not_utf8"
        case .invalidTableName: "invalid_table_name"
        case .valueTooLarge: "value_too_large"
        case .contentTypeTooLong: "content_type_too_long"
        case .malformedPercentEncoding: "malformed_percent_encoding"
        }
    }

    /// A human sentence that says what was wrong and what is allowed.
    public var message: String {
        switch self {
        case .emptyKey:
            "The key is empty; keys are 1 to \(Limits.keyBytesMax) bytes of UTF-8."
        case .keyTooLong(let bytes, let max):
            "The key is \(bytes) bytes long; keys are at most \(max) bytes."
        case .keyNotUTF8:
            "The key is not valid UTF-8."
        case .invalidTableName(let name):
            "'\(name)' is not a valid table name; names are 1 to \(Limits.tableNameBytesMax) characters of a-z, 0-9, '_' and '-', starting with a letter or digit."
        case .valueTooLarge(let bytes, let max):
            "The value is \(bytes) bytes; this node accepts values of at most \(max) bytes."
        case .contentTypeTooLong(let bytes, let max):
            "The content type is \(bytes) bytes long; at most \(max) bytes are kept."
        case .malformedPercentEncoding(let text):
            "'\(text)' is not valid percent-encoding."
        }
    }
}

/// Checks of client input that every entry point (HTTP, RPC, CLI) shares.
public enum Validation {
    /// Checks that `key` is 1...`Limits.keyBytesMax` bytes of UTF-8.
    public static func checkKey(_ key: [UInt8]) throws(InputError) {
        if key.isEmpty { throw .emptyKey }
        if key.count > Limits.keyBytesMax { throw .keyTooLong(bytes: key.count, max: Limits.keyBytesMax) }
        if !UTF8.isValid(key) { throw .keyNotUTF8 }
    }

    /// Checks a table name: 1...`Limits.tableNameBytesMax` of `[a-z0-9_-]`, not starting
    /// with `_` or `-` (names starting with `_` are reserved for Ringstore's own tables).
    public static func checkTableName(_ name: String) throws(InputError) {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty, bytes.count <= Limits.tableNameBytesMax else { throw .invalidTableName(name) }
        for (index, byte) in bytes.enumerated() {
            let isLower = byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")
            let isDigit = byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
            let isPunct = byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
            guard isLower || isDigit || (isPunct && index > 0) else { throw .invalidTableName(name) }
        }
    }

    /// Checks a value's size against the node's configured ceiling.
    public static func checkValue(byteCount: Int, max: Int) throws(InputError) {
        if byteCount > max { throw .valueTooLarge(bytes: byteCount, max: max) }
    }

    /// Checks a content type's length.
    public static func checkContentType(_ contentType: String) throws(InputError) {
        let count = contentType.utf8.count
        if count > Limits.contentTypeBytesMax {
            throw .contentTypeTooLong(bytes: count, max: Limits.contentTypeBytesMax)
        }
    }
}

extension UTF8 {
    /// Whether `bytes` is well-formed UTF-8.
    static func isValid(_ bytes: [UInt8]) -> Bool {
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue: continue
            case .emptyInput: return true
            case .error: return false
            }
        }
    }
}

extension Validation {
    /// Decodes the percent-encoding of a URL path segment: each `%XX` (hex digits in
    /// either case) becomes the byte 0xXX and every other byte passes through as its
    /// UTF-8. `+` stays `+`: form encoding does not apply to paths.
    ///
    /// Throws `.malformedPercentEncoding(text)` when a `%` is not followed by two hex
    /// digits. The result is not checked to be UTF-8; `checkKey` does that.
    public static func percentDecode(_ text: some StringProtocol) throws(InputError) -> [UInt8] {
        let input = Array(text.utf8)
        var output: [UInt8] = []
        output.reserveCapacity(input.count)
        var index = 0
        while index < input.count {
            let byte = input[index]
            guard byte == UInt8(ascii: "%") else {
                output.append(byte)
                index += 1
                continue
            }
            guard index + 2 < input.count,
                  let high = hexDigitValue(input[index + 1]),
                  let low = hexDigitValue(input[index + 2])
            else {
                throw .malformedPercentEncoding(String(text))
            }
            output.append(high << 4 | low)
            index += 3
        }
        return output
    }

    /// The value of an ASCII hex digit, or nil.
    private static func hexDigitValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
