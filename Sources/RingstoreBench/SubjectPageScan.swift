/// Reads the subjects a browse shows as full straight from the page's JSON.
///
/// `ringstore bench rush` runs on the same cores as the cluster it measures. Decoding
/// each student's page of 40 subjects with `JSONDecoder` took about 40% of the rush
/// client's CPU, and the client a fifth of the machine: CPU the cluster then lacked.
/// This scan walks the bytes once and keeps only each subject's `code` and
/// `seats_left`.
public enum SubjectPageScan {
    /// The codes of the subjects with no seat left, from a body shaped like
    /// `{"subjects":[{…,"code":"C",…,"seats_left":N,…},…]}` (keys in any order);
    /// nil when the body does not have that shape (a subject without either field,
    /// or no subjects), so that the caller can fall back to a full decode.
    public static func fullSubjects(in body: [UInt8]) -> Set<String>? {
        var full: Set<String> = []
        var subjects = 0
        var depth = 0
        var index = 0
        var expectingKey = true
        var key: ArraySlice<UInt8> = []
        var code: String?
        var seatsLeft: Int?
        while index < body.count {
            let byte = body[index]
            switch byte {
            case UInt8(ascii: "\""):
                guard let end = stringEnd(in: body, from: index) else { return nil }
                let text = body[(index + 1)..<end]
                if depth == 2 {
                    if expectingKey {
                        key = text
                    } else if key.elementsEqual("code".utf8) {
                        code = String(decoding: text, as: UTF8.self)
                    }
                }
                index = end + 1
                continue
            case UInt8(ascii: "{"):
                depth += 1
                expectingKey = true
                if depth == 2 { (code, seatsLeft) = (nil, nil) }
            case UInt8(ascii: "}"):
                if depth == 2 {
                    guard let code, let seatsLeft else { return nil }
                    subjects += 1
                    if seatsLeft <= 0 { full.insert(code) }
                }
                depth -= 1
            case UInt8(ascii: ":"):
                expectingKey = false
            case UInt8(ascii: ","):
                expectingKey = true
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                var end = index + 1
                while end < body.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(body[end]) { end += 1 }
                if depth == 2, !expectingKey, key.elementsEqual("seats_left".utf8) {
                    seatsLeft = Int(String(decoding: body[index..<end], as: UTF8.self))
                }
                index = end
                continue
            default:
                break
            }
            index += 1
        }
        return subjects > 0 && depth == 0 ? full : nil
    }

    /// The index of the quote that ends the string whose opening quote is at `start`.
    private static func stringEnd(in body: [UInt8], from start: Int) -> Int? {
        var index = start + 1
        while index < body.count {
            switch body[index] {
            case UInt8(ascii: "\\"): index += 2
            case UInt8(ascii: "\""): return index
            default: index += 1
            }
        }
        return nil
    }
}
