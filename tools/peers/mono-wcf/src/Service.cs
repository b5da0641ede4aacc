// Self-hosted CreditCheck WCF service (ServiceHost) for Mono.
// Usage: mono CreditCheckService.exe PORT [variants] [-v] [--host H] [--seconds S] [--any-address]
//   --any-address  accept messages whose SOAP To header names another address (e.g. a relay or
//                  proxy URI); by default WCF requires To == endpoint address, and Mono silently
//                  drops a mismatching message (no fault; the client waits for its SendTimeout)
//   variants: comma list of tcp,duplex,http,streamed,portsharing,reliable
//             (default: tcp,duplex,http,streamed)
using System;
using System.Collections.Generic;
using System.IO;
using System.ServiceModel;
using System.ServiceModel.Description;
using System.Text;
using System.Threading;

namespace CreditCheck
{
    [ServiceBehavior(InstanceContextMode = InstanceContextMode.Single,
                     ConcurrencyMode = ConcurrencyMode.Multiple,
                     IncludeExceptionDetailInFaults = true)]
    public class CreditCheckService : ICreditCheck, IStatementStream
    {
        public static bool Verbose;
        static int auditCount;

        public CreditDecision CheckCredit(string customerId, decimal amount)
        {
            var d = Scoring.Decide(customerId, amount);
            if (Verbose) Console.WriteLine("CheckCredit({0}, {1}) -> {2}", customerId, amount, d);
            return d;
        }

        public CreditDecision Assess(string customerId, decimal amount)
        {
            if (Verbose) Console.WriteLine("Assess({0}, {1})", customerId, amount);
            if (amount > 1000000m)
                throw new FaultException(new FaultReason(string.Format(
                    "amount {0} for {1} exceeds the credit limit of 1000000", amount, customerId)),
                    new FaultCode("CreditLimitExceeded"));
            return Scoring.Decide(customerId, amount);
        }

        public string Ping()
        {
            if (Verbose) Console.WriteLine("Ping()");
            return "pong " + DateTime.UtcNow.ToString("o");
        }

        public void Audit(string msg)
        {
            int n = Interlocked.Increment(ref auditCount);
            if (Verbose) Console.WriteLine("Audit #{0}: {1}", n, msg);
        }

        public string[] GetStatement(int lines)
        {
            if (lines < 0) lines = 0;
            var res = new string[lines];
            for (int i = 0; i < lines; i++)
                res[i] = string.Format("{0:D8} 2024-01-01 PAYMENT ACME-CORP-{1:D6} {2,12:F2} EUR balance-after {3,14:F2} ref={4:X8}",
                                       i, i % 997, (i % 1000) * 1.25m, 100000m - i, unchecked((uint)(i * 2654435761u)));
            if (Verbose) Console.WriteLine("GetStatement({0})", lines);
            return res;
        }

        public int GetAuditCount()
        {
            return Volatile.Read(ref auditCount);
        }

        public CustomerProfile GetProfile(string customerId)
        {
            if (Verbose) Console.WriteLine("GetProfile({0})", customerId);
            return new CustomerProfile {
                CustomerIdentifier = customerId, LegalEntityName = "ACME Trading GmbH",
                RegisteredAddressLine1 = "Hauptstrasse 1", RegisteredAddressLine2 = "10115 Berlin",
                CountryOfIncorporation = "DE", AnnualRevenueInEuro = 12345678.90m, NumberOfEmployees = 250,
                LastReviewTimestamp = new DateTime(2024, 1, 31, 12, 0, 0, DateTimeKind.Utc) };
        }

        public Stream GetStatementStream(int bytes)
        {
            if (Verbose) Console.WriteLine("GetStatementStream({0})", bytes);
            return new PatternStream(bytes);
        }
    }

    [ServiceBehavior(InstanceContextMode = InstanceContextMode.PerSession,
                     ConcurrencyMode = ConcurrencyMode.Multiple,
                     IncludeExceptionDetailInFaults = true)]
    public class CreditCheckDuplexService : ICreditCheckDuplex
    {
        int counter;

        public int NextInSession()
        {
            int n = Interlocked.Increment(ref counter);
            if (CreditCheckService.Verbose)
                Console.WriteLine("NextInSession() session={0} -> {1}", OperationContext.Current.SessionId, n);
            return n;
        }

        public void SubmitCheck(string customerId, decimal amount)
        {
            var cb = OperationContext.Current.GetCallbackChannel<ICreditCheckCallback>();
            var d = Scoring.Decide(customerId, amount);
            if (CreditCheckService.Verbose)
                Console.WriteLine("SubmitCheck({0}, {1}) -> callback {2}", customerId, amount, d);
            cb.OnDecision(customerId, d);
        }
    }

    // Deterministic read-only stream of N bytes (for TransferMode.Streamed tests).
    public class PatternStream : Stream
    {
        readonly long len; long pos;
        public PatternStream(long len) { this.len = len; }
        public override bool CanRead { get { return true; } }
        public override bool CanSeek { get { return false; } }
        public override bool CanWrite { get { return false; } }
        public override long Length { get { return len; } }
        public override long Position { get { return pos; } set { throw new NotSupportedException(); } }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count)
        {
            int n = (int)Math.Min(count, len - pos);
            for (int i = 0; i < n; i++) buffer[offset + i] = (byte)('A' + ((pos + i) % 26));
            pos += n;
            return n;
        }
        public override long Seek(long o, SeekOrigin s) { throw new NotSupportedException(); }
        public override void SetLength(long v) { throw new NotSupportedException(); }
        public override void Write(byte[] b, int o, int c) { throw new NotSupportedException(); }
    }

    // --any-address: accept messages whose SOAP To header is not this endpoint's address.
    // Mono stores ServiceBehavior(AddressFilterMode = Any) but never uses it, so the endpoint
    // dispatcher's AddressFilter is replaced directly.
    public class MatchAllAddresses : IEndpointBehavior
    {
        public void AddBindingParameters(ServiceEndpoint e, System.ServiceModel.Channels.BindingParameterCollection p) { }
        public void ApplyClientBehavior(ServiceEndpoint e, System.ServiceModel.Dispatcher.ClientRuntime r) { }
        public void ApplyDispatchBehavior(ServiceEndpoint e, System.ServiceModel.Dispatcher.EndpointDispatcher d)
        {
            d.AddressFilter = new System.ServiceModel.Dispatcher.MatchAllMessageFilter();
        }
        public void Validate(ServiceEndpoint e) { }
    }

    public static class ServiceMain
    {
        static void AddThrottle(ServiceHost host)
        {
            var t = host.Description.Behaviors.Find<ServiceThrottlingBehavior>();
            if (t == null) { t = new ServiceThrottlingBehavior(); host.Description.Behaviors.Add(t); }
            t.MaxConcurrentCalls = 256;
            t.MaxConcurrentSessions = 1000;
            t.MaxConcurrentInstances = 1000;
        }

        public static int Main(string[] args)
        {
            if (args.Length < 1)
            {
                Console.Error.WriteLine("usage: CreditCheckService.exe PORT [variants] [-v] [--host H] [--seconds S] [--any-address]");
                return 2;
            }
            int port = int.Parse(args[0]);
            string variants = "tcp,duplex,http,streamed";
            string hostName = "127.0.0.1";
            int seconds = -1;
            bool anyAddress = false;
            for (int i = 1; i < args.Length; i++)
            {
                if (args[i] == "-v") CreditCheckService.Verbose = true;
                else if (args[i] == "--host") hostName = args[++i];
                else if (args[i] == "--seconds") seconds = int.Parse(args[++i]);
                else if (args[i] == "--any-address") anyAddress = true;
                else variants = args[i];
            }

            Console.WriteLine("System.ServiceModel: {0}", RuntimeInfo.Describe());
            var singleton = new CreditCheckService();
            var hosts = new List<ServiceHost>();
            int failures = 0;
            foreach (var v in variants.Split(','))
            {
                try
                {
                    ServiceHost host;
                    if (v == "duplex")
                    {
                        host = new ServiceHost(typeof(CreditCheckDuplexService));
                        host.AddServiceEndpoint(typeof(ICreditCheckDuplex), Variants.Create(v),
                                                Variants.Address(v, hostName, port));
                    }
                    else
                    {
                        host = new ServiceHost(singleton);
                        host.AddServiceEndpoint(typeof(ICreditCheck), Variants.Create(v),
                                                Variants.Address(v, hostName, port));
                        if (v == "streamed")
                            host.AddServiceEndpoint(typeof(IStatementStream), Variants.Create("stream"),
                                                    Variants.Address("stream", hostName, port));
                    }
                    AddThrottle(host);
                    if (anyAddress)
                        foreach (var ep in host.Description.Endpoints)
                            ep.Behaviors.Add(new MatchAllAddresses());
                    host.Open();
                    hosts.Add(host);
                    foreach (var ep in host.Description.Endpoints)
                        Console.WriteLine("LISTENING {0,-12} {1} ({2})", v, ep.Address.Uri, ep.Binding.GetType().Name);
                }
                catch (Exception e)
                {
                    failures++;
                    Console.WriteLine("FAILED    {0,-12} {1}: {2}", v, e.GetType().FullName, e.Message);
                    if (CreditCheckService.Verbose) Console.WriteLine(e);
                }
            }
            Console.WriteLine("READY ({0} host(s) open, {1} failed)", hosts.Count, failures);
            Console.Out.Flush();
            if (hosts.Count == 0) return 1;
            if (seconds > 0) Thread.Sleep(seconds * 1000);
            else Thread.Sleep(Timeout.Infinite);
            foreach (var h in hosts) { try { h.Close(); } catch { h.Abort(); } }
            return 0;
        }
    }
}
