import Testing
@testable import RingstoreBench

@Suite struct SubjectPageScanTests {
    private func scan(_ text: String) -> Set<String>? {
        SubjectPageScan.fullSubjects(in: Array(text.utf8))
    }

    // Proves that the subjects without a seat left are found in a page shaped as the
    // application writes it (keys sorted, the counts last), whatever the titles hold.
    @Test func fullSubjectsOfAPage() {
        let page = #"{"subjects":[{"capacity":120,"code":"COMP1000","day":"Mon","end":"11:00","start":"09:00","term":"T1","title":"Introduction to Programming","enrolled":120,"seats_left":0},"#
            + #"{"capacity":100,"code":"COMP1100","day":"Tue","end":"11:00","start":"09:00","term":"T1","title":"Data {Structures}, \"quoted\" : 5","enrolled":3,"seats_left":97},"#
            + #"{"seats_left":0,"enrolled":60,"code":"MATH2000","capacity":60}]}"#
        #expect(scan(page) == ["COMP1000", "MATH2000"])
        #expect(scan(#"{"subjects":[{"code":"A","seats_left":1}]}"#) == [])
    }

    // Proves that a body of another shape is not guessed at: the caller decodes it whole.
    @Test func otherShapesAreRefused() {
        #expect(scan(#"{"subjects":[]}"#) == nil, "no subjects")
        #expect(scan(#"{"subjects":[{"code":"A","enrolled":1}]}"#) == nil, "no seats_left")
        #expect(scan(#"{"subjects":[{"seats_left":0}]}"#) == nil, "no code")
        #expect(scan(#"{"subjects":[{"code":"A","seats_left":0}"#) == nil, "cut off")
        #expect(scan(#"{"error":{"code":"unavailable","message":"no"}}"#) == nil)
        #expect(scan(#"{"subjects":[{"code":"A","seats_left":0,"title":"unterminated}]}"#) == nil)
    }
}
