// MonoXml — our own oracle tool: .NET binary XML ([MC-NBFX]/[MC-NBFS]/[MC-NBFSE]) as read by the
// XmlDictionaryReader of Mono's System.Runtime.Serialization (the .NET reference-source
// XmlBinaryReader), printed through an XmlWriter without a declaration.
//
// Build (tools/peers/oracles/setup.sh does it):
//   mcs -r:System.Runtime.Serialization -r:System.Xml MonoXml.cs -out:bin/MonoXml.exe
// Usage:
//   mono MonoXml.exe decode [--session] FILE      print one document (exit 1 + message on error)
//   mono MonoXml.exe decode-many < JOBS           one job per line: "MODE SOURCE"
//       MODE   nbfs      plain [MC-NBFS] document
//              session   [MC-NBFSE] message opening a new session (string ids restart at 0)
//              session+  [MC-NBFSE] message continuing the previous job's session (ids continue)
//       SOURCE a file path, or "b64:" followed by the bytes in base64
//     prints one line per job: "OK <base64 of the UTF-8 XML>" or "ERR <exception type>: <message>"
//   mono MonoXml.exe gen-typed SEED COUNT       COUNT random documents written by XmlBinaryWriter
//     (XmlDictionaryWriter.CreateBinaryWriter) with typed values: WriteValue of int/long/short/
//     bool/float/double/decimal/DateTime/TimeSpan/Guid/UniqueId/ulong/object[], WriteBase64,
//     WriteString (also XmlDictionaryString), WriteQualifiedName, WriteArray of every array type,
//     comments, static-dictionary and session names; some as NBFSE sessions of 1-3 messages.
//     prints one line per message: "MODE <base64 message> OK|ERR <base64 XML or message>"
//     (MODE as in decode-many; the XML is what the reader prints for it, with the session so far)
// The static dictionary is nbfs-dictionary.txt beside the .exe's folder (or $NBFS_DICTIONARY):
// "wire-key<TAB>string" lines, keys 0x000, 0x002, ... in order, so XmlDictionary id = key/2.
// Text is printed with NewLineHandling.Entitize so that CR and other white space survive exactly.
using System;
using System.Collections.Generic;
using System.IO;
using System.Text;
using System.Xml;

class MonoXml {
  static XmlDictionary Dict = new XmlDictionary();

  static void LoadDictionary() {
    string path = Environment.GetEnvironmentVariable("NBFS_DICTIONARY");
    if (string.IsNullOrEmpty(path)) {
      string exeDir = Path.GetDirectoryName(typeof(MonoXml).Assembly.Location);
      path = Path.Combine(Path.GetDirectoryName(exeDir), "nbfs-dictionary.txt");
    }
    int expect = 0;
    foreach (var line in File.ReadAllLines(path, new UTF8Encoding(false))) {
      if (line.Length == 0) continue;
      int tab = line.IndexOf('\t');
      int key = Convert.ToInt32(line.Substring(0, tab), 16);
      if (key != expect) throw new Exception("nbfs-dictionary.txt: key " + key + " out of order");
      var s = Dict.Add(line.Substring(tab + 1));
      StaticStrings.Add(s);
      try { XmlConvert.VerifyNCName(s.Value); StaticNames.Add(s); } catch (ArgumentException) { } catch (XmlException) { }
      if (s.Key * 2 != key) throw new Exception("nbfs-dictionary.txt: duplicate string at key " + key);
      expect += 2;
    }
  }

  static int MB31(byte[] b, ref int i) {
    int v = 0, shift = 0;
    for (int n = 0; n < 5; n++) {
      if (i >= b.Length) throw new Exception("truncated string table");
      int c = b[i++]; v |= (c & 0x7F) << shift; shift += 7;
      if ((c & 0x80) == 0) return v;
    }
    throw new Exception("mb31 longer than 5 bytes");
  }

  // Reads the [MC-NBFSE] string table at the start of bin into strings (ids continue), returns the body offset.
  static int ReadStringTable(byte[] bin, List<string> strings) {
    int off = 0;
    int size = MB31(bin, ref off);
    int end = off + size;
    if (end > bin.Length) throw new Exception("string table larger than the message");
    var utf8 = new UTF8Encoding(false, true);
    while (off < end) {
      int n = MB31(bin, ref off);
      if (off + n > end) throw new Exception("string overruns the string table");
      strings.Add(utf8.GetString(bin, off, n));
      off += n;
    }
    return off;
  }

  static string Decode(byte[] bin, List<string> session) {
    int off = 0;
    XmlBinaryReaderSession rs = null;
    if (session != null) {
      off = ReadStringTable(bin, session);
      rs = new XmlBinaryReaderSession();
      for (int k = 0; k < session.Count; k++) rs.Add(k, session[k]);
    }
    var r = XmlDictionaryReader.CreateBinaryReader(bin, off, bin.Length - off, Dict, XmlDictionaryReaderQuotas.Max, rs);
    var sb = new StringBuilder();
    var settings = new XmlWriterSettings {
      OmitXmlDeclaration = true, ConformanceLevel = ConformanceLevel.Fragment,
      NewLineHandling = NewLineHandling.Entitize, Encoding = new UTF8Encoding(false)
    };
    using (var xw = XmlWriter.Create(sb, settings)) {
      while (r.Read()) {
        while (r.ReadState == ReadState.Interactive && r.NodeType != XmlNodeType.None) xw.WriteNode(r, true);
      }
    }
    return sb.ToString();
  }

  // ------------------------------------------------------------------ gen-typed
  static Random R;
  static List<XmlDictionaryString> StaticStrings = new List<XmlDictionaryString>();
  static List<XmlDictionaryString> StaticNames = new List<XmlDictionaryString>();   // the NCName ones
  static string[] PlainNames = { "v", "item", "customerId", "amount", "x", "名前", "Ünï", "a.b-c_d", "n" + new string('x', 80) };
  static string[] PlainNs = { "urn:x", "http://example.org/ns/ü", "http://tempuri.org/", "urn:uuid:0c1f2b8e-0000-4000-8000-000000000001" };
  static string[] Prefixes = { "a", "b", "s", "z", "ns0", "pre", "Ω" };

  class TrackingSession : XmlBinaryWriterSession {
    public List<string> New = new List<string>();
    public override bool TryAdd(XmlDictionaryString value, out int key) {
      if (!base.TryAdd(value, out key)) return false;
      New.Add(value.Value); return true;
    }
  }

  static long RL() { var b = new byte[8]; R.NextBytes(b); return BitConverter.ToInt64(b, 0); }
  static int RI() { var b = new byte[4]; R.NextBytes(b); return BitConverter.ToInt32(b, 0); }
  static T Pick<T>(T[] a) { return a[R.Next(a.Length)]; }

  static double RDouble() {
    switch (R.Next(9)) {
      case 0: return BitConverter.Int64BitsToDouble(RL());
      case 1: return R.Next(-1000, 1000);
      case 2: return R.Next(-100000, 100000) / Math.Pow(2, R.Next(0, 30));
      case 3: return Math.Pow(10, R.Next(-323, 309)) * (R.Next(2) == 0 ? 1 : -1);
      case 4: return R.NextDouble() * Math.Pow(10, R.Next(-30, 30));
      case 5: return Pick(new double[] { 0.0, -0.0, double.Epsilon, -double.Epsilon, double.MaxValue, double.MinValue, double.NaN,
                                         double.PositiveInfinity, double.NegativeInfinity, 0.1, 1.0 / 3, 1e15, 1e16, 1e17, 123456789012345678.0,
                                         2147483648.0, -2147483649.0, 9.2233720368547758E+18, 4294967296.0, 0.5, 1.0, -1.0, 255.0, 256.0 });
      case 6: return (double)(float)(R.NextDouble() * Math.Pow(10, R.Next(-10, 10)));
      case 7: return R.Next(int.MinValue, int.MaxValue) * Math.Pow(2, R.Next(-8, 40));
      default: {
        // a short decimal string, parsed by the runtime (its parser is not always correctly rounded)
        var digits = new StringBuilder();
        int n = R.Next(1, 18);
        for (int i = 0; i < n; i++) digits.Append((char)('0' + R.Next(i == 0 ? 1 : 0, 10)));
        return double.Parse(digits + "E" + R.Next(-330, 308 - n), System.Globalization.CultureInfo.InvariantCulture);
      }
    }
  }

  static float RFloat() {
    switch (R.Next(5)) {
      case 0: return BitConverter.ToSingle(BitConverter.GetBytes(RI()), 0);
      case 1: return (float)R.Next(-100000, 100000) / (1 << R.Next(0, 20));
      case 2: return Pick(new float[] { 0f, -0f, float.Epsilon, float.MaxValue, float.MinValue, float.NaN, float.PositiveInfinity,
                                        float.NegativeInfinity, 0.1f, 1f / 3, 16777216f, 16777217f, 3.4028235E+38f, 1E-45f });
      case 3: return (float)(R.NextDouble() * Math.Pow(10, R.Next(-45, 39)));
      default: return (float)RDouble();
    }
  }

  static decimal RDecimal() {
    switch (R.Next(4)) {
      case 0: return new decimal(RI(), RI(), RI(), R.Next(2) == 0, (byte)R.Next(29));
      case 1: return new decimal(R.Next(-1000000, 1000000)) / (decimal)Math.Pow(10, R.Next(0, 8));
      case 2: return new decimal(R.Next(), 0, 0, R.Next(2) == 0, (byte)R.Next(29));
      default: return Pick(new decimal[] { 0m, 0.0m, -0.00m, 1m, -1m, 1000.00m, decimal.MaxValue, decimal.MinValue,
                                           0.0000000000000000000000000001m, 1.5m, 79228162514264337593543950335m, 100m, 1e10m });
    }
  }

  static DateTime RDateTime() {
    var kind = Pick(new[] { DateTimeKind.Utc, DateTimeKind.Unspecified, DateTimeKind.Local });
    long max = DateTime.MaxValue.Ticks;
    long t;
    switch (R.Next(5)) {
      case 0: t = (long)(R.NextDouble() * max); break;
      case 1: t = (long)(R.NextDouble() * max) / 10000000 * 10000000; break;          // whole seconds
      case 2: t = (long)(R.NextDouble() * max) / 10000 * 10000; break;                // milliseconds
      case 3: t = new DateTime(R.Next(1, 10000), R.Next(1, 13), R.Next(1, 29)).Ticks; break;  // midnight
      default: t = Pick(new long[] { 0, 1, max, max - 1, 621355968000000000L, 864000000000L }); break;
    }
    if (kind == DateTimeKind.Local) { t = Math.Max(t, 864000000000L); t = Math.Min(t, max - 864000000000L); }
    return new DateTime(t, kind);
  }

  static TimeSpan RTimeSpan() {
    switch (R.Next(4)) {
      case 0: return new TimeSpan(RL());
      case 1: return TimeSpan.FromMilliseconds(R.Next(-100000000, 100000000));
      case 2: return new TimeSpan(R.Next(-100, 100), R.Next(0, 24), R.Next(0, 60), R.Next(0, 60));
      default: return Pick(new[] { TimeSpan.Zero, TimeSpan.MaxValue, TimeSpan.MinValue, TimeSpan.FromTicks(1), TimeSpan.FromTicks(-1),
                                   TimeSpan.FromDays(1), TimeSpan.FromHours(-1.5) });
    }
  }

  static Guid RGuid() { var b = new byte[16]; R.NextBytes(b); return new Guid(b); }

  static string RString() {
    switch (R.Next(6)) {
      case 0: return "";
      case 1: return Pick(new[] { "0", "1", "true", "false", " ", "\t", "\r\n", "a\rb", "1.5", "INF", "hello" });
      case 2: return new string(Pick(new[] { 'x', 'é', '中' }), Pick(new[] { 1, 127, 128, 255, 256, 300, 1000, 70000 }));
      default: {
        var sb = new StringBuilder();
        string alphabet = "abcXYZ019 .-_:/<>&\"'\t\n\réü€日本語\u00a0\u2028\u0301";
        int n = R.Next(1, 40);
        for (int i = 0; i < n; i++) {
          if (R.Next(15) == 0) sb.Append("\U0001F600"); else sb.Append(alphabet[R.Next(alphabet.Length)]);
        }
        return sb.ToString();
      }
    }
  }

  static byte[] RBytes() {
    int n = R.Next(5) == 0 ? Pick(new[] { 0, 255, 256, 65535, 65536, 70000 }) : R.Next(0, 100);
    var b = new byte[n]; R.NextBytes(b); return b;
  }

  // Writes one random typed value as the current element's or attribute's content.
  static void WriteRandomValue(XmlDictionaryWriter w, bool inAttribute) {
    switch (R.Next(inAttribute ? 14 : 17)) {
      case 0: w.WriteValue(R.Next(2) == 0 ? R.Next(-300, 300) : RI()); break;
      case 1: w.WriteValue(R.Next(3) == 0 ? RL() : RL() >> R.Next(0, 63)); break;
      case 2: w.WriteValue(R.Next(2) == 0); break;
      case 3: w.WriteValue(RDouble()); break;
      case 4: w.WriteValue(RFloat()); break;
      case 5: w.WriteValue(RDecimal()); break;
      case 6: w.WriteValue(RDateTime()); break;
      case 7: w.WriteValue(RTimeSpan()); break;
      case 8: w.WriteValue(RGuid()); break;
      case 9: w.WriteValue(R.Next(3) == 0 ? new UniqueId("uuid-" + R.Next()) : new UniqueId(RGuid())); break;
      case 10: w.WriteValue((object)(ulong)RL()); break;
      case 11: { var b = RBytes(); w.WriteBase64(b, 0, b.Length); break; }
      case 12: w.WriteString(RString()); break;
      case 13: w.WriteString(StaticStrings[R.Next(StaticStrings.Count)]); break;
      case 14: w.WriteValue((short)R.Next(short.MinValue, short.MaxValue)); break;
      case 15: w.WriteValue((object)new object[] { R.Next(), RDouble(), R.Next(2) == 0, "x" }); break;
      default: w.WriteValue(R.Next()); w.WriteValue(RGuid()); break;   // two text records in a row
    }
  }

  static void WriteArray(XmlDictionaryWriter w, string prefix, string name, string ns) {
    int n = R.Next(1, 6);
    switch (R.Next(10)) {
      case 0: { var a = new bool[n]; for (int i = 0; i < n; i++) a[i] = R.Next(2) == 0; w.WriteArray(prefix, name, ns, a, 0, n); break; }
      case 1: { var a = new short[n]; for (int i = 0; i < n; i++) a[i] = (short)R.Next(short.MinValue, short.MaxValue); w.WriteArray(prefix, name, ns, a, 0, n); break; }
      case 2: { var a = new int[n]; for (int i = 0; i < n; i++) a[i] = RI(); w.WriteArray(prefix, name, ns, a, 0, n); break; }
      case 3: { var a = new long[n]; for (int i = 0; i < n; i++) a[i] = RL(); w.WriteArray(prefix, name, ns, a, 0, n); break; }
      case 4: { var a = new float[n]; for (int i = 0; i < n; i++) a[i] = RFloat(); w.WriteArray(prefix, name, ns, a, 0, n); break; }
      case 5: { var a = new double[n]; for (int i = 0; i < n; i++) a[i] = RDouble(); w.WriteArray(prefix, name, ns, a, 0, n); break; }
      case 6: { var a = new decimal[n]; for (int i = 0; i < n; i++) a[i] = RDecimal(); w.WriteArray(prefix, name, ns, a, 0, n); break; }
      case 7: { var a = new DateTime[n]; for (int i = 0; i < n; i++) a[i] = RDateTime(); w.WriteArray(prefix, name, ns, a, 0, n); break; }
      case 8: { var a = new Guid[n]; for (int i = 0; i < n; i++) a[i] = RGuid(); w.WriteArray(prefix, name, ns, a, 0, n); break; }
      default: { var a = new TimeSpan[n]; for (int i = 0; i < n; i++) a[i] = RTimeSpan(); w.WriteArray(prefix, name, ns, a, 0, n); break; }
    }
  }

  // A name: static dictionary string, session (app dictionary) string, or plain string.
  static object RName(XmlDictionary app, bool session) {
    int k = R.Next(10);
    if (k < 4) return StaticNames[R.Next(StaticNames.Count)];
    if (k < 7 && session) return app.Add(Pick(PlainNames) + (R.Next(3) == 0 ? R.Next(200).ToString() : ""));
    return Pick(PlainNames);
  }

  static void WriteRandomElement(XmlDictionaryWriter w, XmlDictionary app, bool session, int depth) {
    var nameObj = RName(app, session);
    string prefix = R.Next(3) == 0 ? Pick(Prefixes) : null;
    object nsObj = prefix != null || R.Next(3) == 0
      ? (R.Next(2) == 0 ? (object)StaticStrings[R.Next(StaticStrings.Count)] : (object)Pick(PlainNs)) : null;
    if (prefix != null && nsObj is XmlDictionaryString && ((XmlDictionaryString)nsObj).Value == "") nsObj = "urn:x";
    if (nameObj is XmlDictionaryString && (nsObj == null || nsObj is XmlDictionaryString))
      w.WriteStartElement(prefix, (XmlDictionaryString)nameObj, (XmlDictionaryString)nsObj ?? XmlDictionaryString.Empty);
    else
      w.WriteStartElement(prefix, nameObj.ToString(), nsObj == null ? null : nsObj.ToString());
    int nattr = R.Next(4) == 0 ? R.Next(1, 4) : 0;
    for (int i = 0; i < nattr; i++) {
      string an = "at" + i;
      if (R.Next(3) == 0) w.WriteStartAttribute(Pick(new[] { "p", "q", "xx" }) + i, an, "urn:attr" + i);
      else w.WriteStartAttribute(an);
      WriteRandomValue(w, true);
      w.WriteEndAttribute();
    }
    int nchild = depth > 4 ? 0 : R.Next(0, 5);
    bool prevValue = false;   // keep typed values apart (a comment or element between), so each is one text node
    for (int i = 0; i < nchild; i++) {
      int k = R.Next(12);
      bool value = false;
      if (k < 4) WriteRandomElement(w, app, session, depth + 1);
      else if (k < 5) { bool p = R.Next(3) == 0; WriteArray(w, p ? "p" : null, Pick(PlainNames), p || R.Next(3) == 0 ? "urn:arr" : null); }
      else if (k < 6) w.WriteComment(Pick(new[] { "", " c ", "日本語", "a-b" }));
      else if (k < 7 && prefix != null && nameObj is XmlDictionaryString && nsObj is XmlDictionaryString) {
        w.WriteStartElement("q"); w.WriteQualifiedName(StaticNames[R.Next(StaticNames.Count)], (XmlDictionaryString)nsObj); w.WriteEndElement();
      } else {
        if (prevValue) { if (R.Next(2) == 0) w.WriteComment("sep"); else { w.WriteStartElement("e"); w.WriteEndElement(); } }
        WriteRandomValue(w, false);
        value = true;
      }
      prevValue = value;
    }
    if (nchild == 0 && R.Next(2) == 0) WriteRandomValue(w, false);
    w.WriteEndElement();
  }

  static void MBw(Stream s, int v) { while ((v & ~0x7F) != 0) { s.WriteByte((byte)((v & 0x7F) | 0x80)); v >>= 7; } s.WriteByte((byte)v); }

  static void GenTyped(int seed, int count, StreamWriter stdout) {
    R = new Random(seed);
    int k = 0;
    while (k < count) {
      bool session = R.Next(3) == 0;
      int nmsg = session ? R.Next(1, 4) : 1;
      var app = new XmlDictionary();
      var ws = session ? new TrackingSession() : null;
      var readerStrings = new List<string>();
      for (int m = 0; m < nmsg && k < count; m++, k++) {
        var ms = new MemoryStream();
        var w = XmlDictionaryWriter.CreateBinaryWriter(ms, Dict, ws, false);
        if (ws != null) ws.New.Clear();
        if (session && R.Next(4) == 0) for (int i = 0; i < R.Next(60, 140); i++) app.Add("pad" + m + "-" + i);  // ids beyond 63: 2-byte keys
        WriteRandomElement(w, app, session, 0);
        w.Flush();
        byte[] bin = ms.ToArray();
        string mode = "nbfs";
        if (session) {
          var table = new MemoryStream();
          foreach (var s in ws.New) { var b = Encoding.UTF8.GetBytes(s); MBw(table, b.Length); table.Write(b, 0, b.Length); }
          var msg = new MemoryStream(); MBw(msg, (int)table.Length); table.WriteTo(msg); msg.Write(bin, 0, bin.Length);
          bin = msg.ToArray();
          mode = m == 0 ? "session" : "session+";
        }
        string result;
        try { result = "OK " + Convert.ToBase64String(Encoding.UTF8.GetBytes(Decode(bin, session ? readerStrings : null))); }
        catch (Exception e) { result = "ERR " + (e.GetType().Name + ": " + e.Message).Replace("\r", " ").Replace("\n", " "); }
        stdout.WriteLine(mode + " " + Convert.ToBase64String(bin) + " " + result);
      }
    }
  }

  static byte[] Source(string s) {
    return s.StartsWith("b64:") ? Convert.FromBase64String(s.Substring(4)) : File.ReadAllBytes(s);
  }

  static int Main(string[] a) {
    if (a.Length < 1) { Console.Error.WriteLine("usage: MonoXml decode [--session] FILE | decode-many < JOBS | gen-typed SEED COUNT"); return 2; }
    LoadDictionary();
    var stdout = new StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(false));
    if (a[0] == "decode") {
      bool session = a.Length > 2 && a[1] == "--session";
      try {
        stdout.Write(Decode(Source(a[a.Length - 1]), session ? new List<string>() : null));
        stdout.Write("\n"); stdout.Flush(); return 0;
      } catch (Exception e) {
        Console.Error.WriteLine(e.GetType().Name + ": " + e.Message); return 1;
      }
    }
    if (a[0] == "decode-many") {
      List<string> session = null;
      string line;
      var stdin = new StreamReader(Console.OpenStandardInput(), new UTF8Encoding(false));
      while ((line = stdin.ReadLine()) != null) {
        if (line.Length == 0) continue;
        int sp = line.IndexOf(' ');
        string mode = line.Substring(0, sp), src = line.Substring(sp + 1);
        List<string> use = null;
        if (mode == "session") session = use = new List<string>();
        else if (mode == "session+") use = session ?? (session = new List<string>());
        else if (mode != "nbfs") { stdout.WriteLine("ERR unknown mode " + mode); continue; }
        try {
          var xml = Decode(Source(src), use);
          stdout.WriteLine("OK " + Convert.ToBase64String(Encoding.UTF8.GetBytes(xml)));
        } catch (Exception e) {
          stdout.WriteLine("ERR " + (e.GetType().Name + ": " + e.Message).Replace("\r", " ").Replace("\n", " "));
        }
      }
      stdout.Flush();
      return 0;
    }
    if (a[0] == "gen-typed") {
      GenTyped(int.Parse(a[1]), int.Parse(a[2]), stdout);
      stdout.Flush();
      return 0;
    }
    Console.Error.WriteLine("unknown command " + a[0]);
    return 2;
  }
}
