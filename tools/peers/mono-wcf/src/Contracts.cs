// Shared WCF contracts for the CreditCheck test peer (Mono / System.ServiceModel).
// Compiled into both the service and the client executable.
using System;
using System.IO;
using System.Runtime.Serialization;
using System.ServiceModel;

namespace CreditCheck
{
    public static class Ns
    {
        public const string Value = "http://schemas.example.org/creditcheck/2024";
    }

    [DataContract(Namespace = Ns.Value)]
    public class CreditDecision
    {
        [DataMember] public bool Approved;
        [DataMember] public int Score;
        [DataMember] public string Reason;

        public override string ToString()
        {
            return string.Format("Approved={0} Score={1} Reason={2}", Approved, Score, Reason);
        }
    }

    // A wider record: its member names add ~190 bytes of new strings to the binary session
    // dictionary in one message (exercises Mono's sized-envelope length computation).
    [DataContract(Namespace = Ns.Value)]
    public class CustomerProfile
    {
        [DataMember] public string CustomerIdentifier;
        [DataMember] public string LegalEntityName;
        [DataMember] public string RegisteredAddressLine1;
        [DataMember] public string RegisteredAddressLine2;
        [DataMember] public string CountryOfIncorporation;
        [DataMember] public decimal AnnualRevenueInEuro;
        [DataMember] public int NumberOfEmployees;
        [DataMember] public DateTime LastReviewTimestamp;
    }

    // Plain request/reply + one-way contract (the "on-premises credit check").
    [ServiceContract(Namespace = Ns.Value)]
    public interface ICreditCheck
    {
        [OperationContract]
        CreditDecision CheckCredit(string customerId, decimal amount);

        [OperationContract]
        string Ping();

        [OperationContract(IsOneWay = true)]
        void Audit(string msg);

        // Large payload: 'lines' statement lines of ~100 characters each.
        [OperationContract]
        string[] GetStatement(int lines);

        // Returns how many Audit messages the service has received so far
        // (lets a client verify one-way messages actually arrived).
        [OperationContract]
        int GetAuditCount();

        [OperationContract]
        CustomerProfile GetProfile(string customerId);

        // Throws a FaultException (SOAP fault on the wire) when the amount is above the
        // credit limit of 1 000 000; otherwise the same decision as CheckCredit.
        [OperationContract]
        CreditDecision Assess(string customerId, decimal amount);
    }

    // Streamed-only contract: body is a raw Stream of 'bytes' bytes.
    [ServiceContract(Namespace = Ns.Value)]
    public interface IStatementStream
    {
        [OperationContract]
        Stream GetStatementStream(int bytes);
    }

    // Duplex / session contract.
    [ServiceContract(Namespace = Ns.Value, SessionMode = SessionMode.Required,
                     CallbackContract = typeof(ICreditCheckCallback))]
    public interface ICreditCheckDuplex
    {
        // Request/reply inside the session; the service keeps a per-session counter.
        [OperationContract]
        int NextInSession();

        // One-way request; the decision comes back later through the callback.
        [OperationContract(IsOneWay = true)]
        void SubmitCheck(string customerId, decimal amount);
    }

    public interface ICreditCheckCallback
    {
        [OperationContract(IsOneWay = true)]
        void OnDecision(string customerId, CreditDecision decision);
    }

    public static class Scoring
    {
        // Deterministic "credit check" so captures/tests are reproducible.
        public static CreditDecision Decide(string customerId, decimal amount)
        {
            int h = 17;
            foreach (char c in customerId ?? "") h = unchecked(h * 31 + c);
            int score = 300 + (int)((uint)h % 551u); // 300..850
            bool ok = score >= 600 && amount <= score * 100m;
            string reason = ok ? "OK" : (score < 600 ? "LOW_SCORE" : "AMOUNT_TOO_HIGH");
            return new CreditDecision { Approved = ok, Score = score, Reason = reason };
        }
    }
}
