public import HTTPTypes
public import RingstoreCore

/// An error a client caused or must know about, with the JSON body of DESIGN.md §3:
/// `{"error": "<code>", "message": "<human sentence>"}`.
public struct APIError: Error, Sendable, Equatable {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    public var headers: HTTPFields
    /// More members of the body's object, already JSON (`,"value":3`); empty for none.
    public var extraJSON: String

    public init(_ status: HTTPResponse.Status, code: String, message: String, headers: HTTPFields = [:], extraJSON: String = "") {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.extraJSON = extraJSON
    }

    /// The input error as a 400 (or 413 for sizes).
    public init(_ error: InputError) {
        switch error {
        case .valueTooLarge: self.init(.contentTooLarge, code: error.code, message: error.message)
        default: self.init(.badRequest, code: error.code, message: error.message)
        }
    }

    /// A 503 that tells the client to retry after a second.
    static func unavailable(code: String, message: String) -> APIError {
        var retry = HTTPFields()
        retry[.retryAfter] = "1"
        return APIError(.serviceUnavailable, code: code, message: message, headers: retry)
    }

    static func tableNotFound(_ table: String) -> APIError {
        APIError(.notFound, code: "table_not_found", message: "There is no table named '\(table)'; create it with PUT /v1/tables/\(table).")
    }

    static func routeNotFound(_ path: String) -> APIError {
        APIError(.notFound, code: "route_not_found", message: "No route matches \(path); see docs/openapi.yaml for the API.")
    }

    static func methodNotAllowed(_ method: HTTPRequest.Method, path: String, allowed: [HTTPRequest.Method]) -> APIError {
        let list = allowed.map(\.rawValue).joined(separator: ", ")
        var headers = HTTPFields()
        headers[.allow] = list
        return APIError(.methodNotAllowed, code: "method_not_allowed", message: "\(method.rawValue) is not allowed on \(path); allowed: \(list).", headers: headers)
    }

    static func invalidContext(_ reason: String) -> APIError {
        APIError(.badRequest, code: "invalid_context", message: "The X-Ringstore-Context header is not a context this cluster issued (\(reason)); send back the header of a read, or none.")
    }

    static func invalidQuorum(_ name: String, _ text: String, n: Int) -> APIError {
        APIError(.badRequest, code: "invalid_quorum", message: "\(name)=\(text) is not a quorum for this table; use a number from 1 to \(n).")
    }

    static func invalidJSON(_ reason: String) -> APIError {
        APIError(.badRequest, code: "invalid_json", message: "The request body is not the JSON this route takes: \(reason).")
    }

    static func internalError(_ reason: String) -> APIError {
        APIError(.internalServerError, code: "internal_error", message: reason)
    }

    /// The JSON body, built without an encoder: it is two strings.
    var body: String {
        "{\"error\":\(JSONText.quote(code)),\"message\":\(JSONText.quote(message))\(extraJSON)}"
    }
}

/// Small helpers for writing JSON by hand where an encoder would cost more than the response.
enum JSONText {
    /// `text` as a JSON string literal, quotes included.
    static func quote(_ text: String) -> String {
        var result = "\""
        result.reserveCapacity(text.utf8.count + 2)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case let control where control.value < 0x20:
                let hex = String(control.value, radix: 16)
                result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: result.unicodeScalars.append(scalar)
            }
        }
        result += "\""
        return result
    }
}
