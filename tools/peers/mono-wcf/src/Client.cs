// CreditCheck WCF client for Mono: calls the service N times, prints results and timing.
// Usage: mono CreditCheckClient.exe HOST PORT N [options]
//   --variant V       tcp (default) | http | streamed | duplex | portsharing | reliable | stream
//   --op OP           check (default) | ping | audit | statement | mixed | stream | profile | fault (Assess above the credit limit: the service throws FaultException)
//                     mixed = CheckCredit, Ping, Audit round-robin
//   --lines L         lines per GetStatement call (default 10000, ~1 MB)
//   --bytes B         bytes per GetStatementStream call (default 1048576)
//   --concurrency C   C threads, each with its own channel (= own TCP connection) (default 1)
//   --warmup W        warm-up calls per thread before timing (default min(N/10, 200))
//   --new-channel     open a new channel (connection) for every call
//   --quiet           print only the summary
//   --via HOST:PORT   connect to HOST:PORT (e.g. a recording proxy or a relay bridge) while keeping the
//                     logical address (SOAP To header) of the real service (WCF ClientViaBehavior)
//   --to URI          override the logical address (SOAP To header)
//   --via-path PATH   with --via: also send this path in the framing Via (a Via the service does not host)
// Output: one result line per call (at most 20), then `SUMMARY ...`. A failure prints one line
// `ERROR <exception type>: <message>` (e.g. `ERROR System.ServiceModel.FaultException:
// http://schemas.microsoft.com/ws/2006/05/framing/faults/EndpointNotFound` when the peer answers the
// preamble with a framing Fault record), then the older `THREAD FAILED`/`CLIENT FAILED` lines and the
// stack trace; the exit status is then 1.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.ServiceModel;
using System.ServiceModel.Channels;
using System.ServiceModel.Description;
using System.Threading;

namespace CreditCheck
{
    public class CallbackHandler : ICreditCheckCallback
    {
        public int Received;
        public readonly AutoResetEvent Signal = new AutoResetEvent(false);
        public static bool Quiet;
        public void OnDecision(string customerId, CreditDecision decision)
        {
            Interlocked.Increment(ref Received);
            if (!Quiet) Console.WriteLine("  callback OnDecision({0}) {1}", customerId, decision);
            Signal.Set();
        }
    }

    public static class ClientMain
    {
        static string variant = "tcp", op = "check";
        static int lines = 10000, bytes = 1 << 20, concurrency = 1, warmup = -1;
        static bool newChannel, quiet;
        static string via, to, viaPath;
        static string host; static int port; static int n;
        static int printed;
        [ThreadStatic] static bool channelUsed;   // --new-channel: the current channel already carried a call

        static void Say(string fmt, params object[] a)
        {
            if (quiet) return;
            if (Interlocked.Increment(ref printed) > 20) return;
            Console.WriteLine(fmt, a);
        }

        public static int Main(string[] args)
        {
            if (args.Length < 3)
            {
                Console.Error.WriteLine("usage: CreditCheckClient.exe HOST PORT N [--variant V] [--op OP] [--lines L] [--bytes B] [--concurrency C] [--warmup W] [--new-channel] [--quiet] [--via HOST:PORT [--via-path PATH]] [--to URI]");
                return 2;
            }
            host = args[0]; port = int.Parse(args[1]); n = int.Parse(args[2]);
            for (int i = 3; i < args.Length; i++)
            {
                switch (args[i])
                {
                    case "--variant": variant = args[++i]; break;
                    case "--op": op = args[++i]; break;
                    case "--lines": lines = int.Parse(args[++i]); break;
                    case "--bytes": bytes = int.Parse(args[++i]); break;
                    case "--concurrency": concurrency = int.Parse(args[++i]); break;
                    case "--warmup": warmup = int.Parse(args[++i]); break;
                    case "--new-channel": newChannel = true; break;
                    case "--quiet": quiet = true; break;
                    case "--via": via = args[++i]; break;
                    case "--via-path": viaPath = args[++i]; break;
                    case "--to": to = args[++i]; break;
                    default: Console.Error.WriteLine("unknown option " + args[i]); return 2;
                }
            }
            Console.WriteLine("System.ServiceModel: {0}", RuntimeInfo.Describe());
            if (op == "stream" && variant == "tcp") variant = "stream";
            if (warmup < 0) warmup = Math.Min(n / 10, 200);
            CallbackHandler.Quiet = quiet;
            string addr = to ?? Variants.Address(variant, host, port);
            Console.WriteLine("client: variant={0} address={1}{7} op={2} n={3} concurrency={4} warmup={5}{6}",
                              variant, addr, op, n, concurrency, warmup, newChannel ? " new-channel-per-call" : "",
                              via != null ? " via=" + ViaUri(addr) : "");
            try
            {
                if (variant == "duplex") return RunDuplex(addr);
                return RunRequestReply(addr);
            }
            catch (Exception e)
            {
                PrintError(e);
                Console.WriteLine("CLIENT FAILED: {0}: {1}", e.GetType().FullName, e.Message);
                Console.WriteLine(e);
                return 1;
            }
        }

        // One line, always printed (also with --quiet), for tests to assert on.
        static void PrintError(Exception e)
        {
            string msg = (e.Message ?? "").Replace("\r", " ").Replace("\n", " ");
            Console.WriteLine("ERROR {0}: {1}", e.GetType().FullName, msg);
        }

        static Uri ViaUri(string addr)
        {
            var u = new UriBuilder(addr);
            var hp = via.Split(':');
            u.Host = hp[0]; u.Port = int.Parse(hp[1]);
            if (viaPath != null) u.Path = viaPath;
            return u.Uri;
        }

        // Mono's ClientViaBehavior throws NotImplementedException, so the via is passed to
        // CreateChannel(EndpointAddress, Uri via) instead.
        static object NewChannel(ChannelFactory<ICreditCheck> cf, ChannelFactory<IStatementStream> sf)
        {
            if (cf != null)
                return via == null ? cf.CreateChannel() : cf.CreateChannel(cf.Endpoint.Address, ViaUri(cf.Endpoint.Address.Uri.ToString()));
            return via == null ? sf.CreateChannel() : sf.CreateChannel(sf.Endpoint.Address, ViaUri(sf.Endpoint.Address.Uri.ToString()));
        }

        static int RunRequestReply(string addr)
        {
            var binding = Variants.Create(variant);
            var ep = new EndpointAddress(addr);
            ChannelFactory<ICreditCheck> cf = null;
            ChannelFactory<IStatementStream> sf = null;
            if (op == "stream") { sf = new ChannelFactory<IStatementStream>(binding, ep); sf.Open(); }
            else { cf = new ChannelFactory<ICreditCheck>(binding, ep); cf.Open(); }

            var all = new List<double>[concurrency];
            var threads = new Thread[concurrency];
            var errors = new Exception[concurrency];
            var startGate = new Barrier(concurrency + 1);
            long totalBytes = 0;
            for (int t = 0; t < concurrency; t++)
            {
                int tid = t;
                all[t] = new List<double>(n);
                threads[t] = new Thread(() =>
                {
                    try
                    {
                        object ch = NewChannel(cf, sf);
                        ((ICommunicationObject)ch).Open();
                        for (int w = 0; w < warmup; w++) ch = OneCall(ch, cf, sf, tid, -1 - w, ref totalBytes);
                        startGate.SignalAndWait();
                        var sw = new Stopwatch();
                        for (int i = 0; i < n; i++)
                        {
                            sw.Restart();
                            ch = OneCall(ch, cf, sf, tid, i, ref totalBytes);
                            all[tid].Add(sw.Elapsed.TotalMilliseconds);
                        }
                        ((ICommunicationObject)ch).Close();
                    }
                    catch (Exception e)
                    {
                        errors[tid] = e;
                        try { startGate.RemoveParticipant(); } catch { }
                    }
                });
                threads[t].Start();
            }
            startGate.SignalAndWait();
            var total = Stopwatch.StartNew();
            foreach (var th in threads) th.Join();
            total.Stop();

            int failed = 0;
            foreach (var e in errors) if (e != null) { failed++; PrintError(e); Console.WriteLine("THREAD FAILED: {0}: {1}", e.GetType().FullName, e.Message); if (!quiet) Console.WriteLine(e); }

            if (op == "audit" || op == "mixed")
            {
                var c = (ICreditCheck)NewChannel(cf, null);
                // one-way messages may still be in flight / being dispatched: wait until the count is stable
                int prev = -1, cur = c.GetAuditCount();
                for (int k = 0; k < 20 && cur != prev; k++) { Thread.Sleep(100); prev = cur; cur = c.GetAuditCount(); }
                Console.WriteLine("service audit count now: {0}", cur);
                ((ICommunicationObject)c).Close();
            }
            Summary(all, total.Elapsed.TotalSeconds, Interlocked.Read(ref totalBytes));
            if (cf != null) cf.Close();
            if (sf != null) sf.Close();
            return failed == 0 ? 0 : 1;
        }

        static object OneCall(object ch, ChannelFactory<ICreditCheck> cf, ChannelFactory<IStatementStream> sf,
                              int tid, int i, ref long totalBytes)
        {
            if (newChannel && channelUsed)
            {
                ((ICommunicationObject)ch).Close();
                ch = NewChannel(cf, sf);
                ((ICommunicationObject)ch).Open();
            }
            channelUsed = true;
            string which = op;
            if (op == "mixed") which = new[] { "check", "ping", "audit" }[((i % 3) + 3) % 3];
            switch (which)
            {
                case "check":
                {
                    string cust = "CUST-" + ((tid * 100000 + Math.Abs(i)) % 1000).ToString("D4");
                    decimal amt = 1000m + (Math.Abs(i) % 50) * 1234.56m;
                    var d = ((ICreditCheck)ch).CheckCredit(cust, amt);
                    if (i >= 0) Say("[t{0}] CheckCredit({1}, {2}) -> {3}", tid, cust, amt, d);
                    break;
                }
                case "fault":
                {
                    string cust = "CUST-" + ((tid * 100000 + Math.Abs(i)) % 1000).ToString("D4");
                    decimal amt = 5000000m + Math.Abs(i);
                    try
                    {
                        var d = ((ICreditCheck)ch).Assess(cust, amt);
                        throw new InvalidOperationException("Assess(" + cust + ", " + amt + ") returned " + d + " instead of a fault");
                    }
                    catch (FaultException fe)
                    {
                        if (i >= 0) Say("[t{0}] Assess({1}, {2}) -> FAULT code={3} reason={4}", tid, cust, amt, fe.Code.Name, fe.Reason);
                    }
                    break;
                }
                case "ping":
                {
                    var s = ((ICreditCheck)ch).Ping();
                    if (i >= 0) Say("[t{0}] Ping() -> {1}", tid, s);
                    break;
                }
                case "audit":
                {
                    ((ICreditCheck)ch).Audit("audit message " + tid + "/" + i);
                    if (i >= 0) Say("[t{0}] Audit(\"audit message {0}/{1}\") sent (one-way)", tid, i);
                    break;
                }
                case "profile":
                {
                    var p = ((ICreditCheck)ch).GetProfile("CUST-" + Math.Abs(i));
                    if (i >= 0) Say("[t{0}] GetProfile() -> {1}, {2}, {3} employees, revenue {4}, reviewed {5:o}", tid, p.CustomerIdentifier, p.LegalEntityName, p.NumberOfEmployees, p.AnnualRevenueInEuro, p.LastReviewTimestamp);
                    break;
                }
                case "statement":
                {
                    var arr = ((ICreditCheck)ch).GetStatement(lines);
                    long sz = 0; foreach (var l in arr) sz += l.Length;
                    if (i >= 0) Interlocked.Add(ref totalBytes, sz);
                    if (i >= 0) Say("[t{0}] GetStatement({1}) -> {2} lines, {3} chars, last=\"{4}\"", tid, lines, arr.Length, sz, arr.Length > 0 ? arr[arr.Length - 1] : "");
                    break;
                }
                case "stream":
                {
                    using (var s = ((IStatementStream)ch).GetStatementStream(bytes))
                    {
                        var buf = new byte[65536]; long got = 0; int r;
                        while ((r = s.Read(buf, 0, buf.Length)) > 0) got += r;
                        if (i >= 0) Interlocked.Add(ref totalBytes, got);
                        if (i >= 0) Say("[t{0}] GetStatementStream({1}) -> read {2} bytes", tid, bytes, got);
                    }
                    break;
                }
                default: throw new ArgumentException("unknown op " + which);
            }
            return ch;
        }

        static int RunDuplex(string addr)
        {
            var handler = new CallbackHandler();
            var binding = Variants.Create("duplex");
            var df = new DuplexChannelFactory<ICreditCheckDuplex>(new InstanceContext(handler),
                                                                   binding, new EndpointAddress(addr));
            var lat = new List<double>(n);
            var ch = via == null ? df.CreateChannel() : df.CreateChannel(df.Endpoint.Address, ViaUri(addr));
            ((ICommunicationObject)ch).Open();
            Console.WriteLine("session id: {0}", ((IContextChannel)ch).SessionId);
            var total = Stopwatch.StartNew();
            var sw = new Stopwatch();
            for (int i = 0; i < n; i++)
            {
                sw.Restart();
                int c = ch.NextInSession();
                string cust = "CUST-" + (i % 1000).ToString("D4");
                ch.SubmitCheck(cust, 5000m + i);
                if (!handler.Signal.WaitOne(10000)) throw new TimeoutException("no callback within 10s for call " + i);
                lat.Add(sw.Elapsed.TotalMilliseconds);
                Say("NextInSession() -> {0}", c);
            }
            total.Stop();
            Console.WriteLine("callbacks received: {0}/{1}", handler.Received, n);
            // Mono's duplex client Close() sends the NMF End record and then blocks until a timeout
            // (about a minute, regardless of CloseTimeout); give it 2 s, then Abort().
            var closer = new Thread(() => { try { ((ICommunicationObject)ch).Close(); } catch (Exception) { } });
            closer.IsBackground = true;
            closer.Start();
            if (!closer.Join(2000))
            {
                Console.WriteLine("note: duplex channel Close() still blocked after 2 s (known Mono behaviour; End record already sent) -> Abort()");
                ((ICommunicationObject)ch).Abort();
            }
            df.Abort();
            Summary(new[] { lat }, total.Elapsed.TotalSeconds, 0);
            return handler.Received == n ? 0 : 1;
        }

        static void Summary(List<double>[] per, double seconds, long bytesTotal)
        {
            var all = per.SelectMany(x => x).ToList();
            all.Sort();
            int cnt = all.Count;
            Func<double, double> pct = p => cnt == 0 ? 0 : all[Math.Min(cnt - 1, (int)Math.Ceiling(p / 100.0 * cnt) - 1)];
            Console.WriteLine("SUMMARY variant={0} op={1} calls={2} threads={3} elapsed={4:F3}s rate={5:F1} calls/s p50={6:F3}ms p90={7:F3}ms p99={8:F3}ms max={9:F3}ms{10}",
                variant, op, cnt, per.Length, seconds, cnt / seconds, pct(50), pct(90), pct(99), cnt == 0 ? 0 : all[cnt - 1],
                bytesTotal > 0 ? string.Format(" payload={0:F1}MB ({1:F1} MB/s)", bytesTotal / 1e6, bytesTotal / 1e6 / seconds) : "");
        }
    }
}
