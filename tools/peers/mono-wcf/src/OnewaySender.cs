// A NetOneway/NetEvent relay *sender* built from Mono's stock WCF pieces only: a CustomBinding
// of BinaryMessageEncodingBindingElement + TcpTransportBindingElement (the elements the legacy
// NetOnewayRelayBinding sender is made of), speaking the relay's connect contract as public
// notes describe it: a Connect message with a RelayAccessToken header, then each message
// acknowledged by a correlated reply.
// Usage: mono OnewaySender.exe HOST:PORT sb://NS/PATH TOKEN N [--size BYTES] [--tag T]
// Prints "SENT i" per acknowledged message, "FAULT <code> <reason>" on a fault, and a SUMMARY.
using System;
using System.Diagnostics;
using System.ServiceModel;
using System.ServiceModel.Channels;
using System.Text;
using System.Xml;

[ServiceContract(Namespace = Ns.Connect, SessionMode = SessionMode.Required)]
public interface IRelaySender {
    [OperationContract(Action = "*", ReplyAction = "*")]
    Message Request(Message m);
}

static class Ns {
    public const string Connect = "http://schemas.microsoft.com/netservices/2009/05/servicebus/connect";
    public const string Wsse = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
    public const string Wsu = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
}

class RelayAccessTokenHeader : MessageHeader {
    readonly string token;
    public RelayAccessTokenHeader(string token) { this.token = token; }
    public override string Name { get { return "RelayAccessToken"; } }
    public override string Namespace { get { return Ns.Connect; } }
    protected override void OnWriteHeaderContents(XmlDictionaryWriter w, MessageVersion v) {
        w.WriteStartElement("wsse", "BinarySecurityToken", Ns.Wsse);
        w.WriteAttributeString("wsu", "Id", Ns.Wsu, "uuid:" + Guid.NewGuid());
        w.WriteAttributeString("ValueType", "http://schemas.xmlsoap.org/ws/2009/11/swt-token-profile-1.0");
        w.WriteAttributeString("EncodingType", "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary");
        w.WriteString(Convert.ToBase64String(Encoding.UTF8.GetBytes(token)));
        w.WriteEndElement();
    }
}

class ConnectBody : BodyWriter {
    readonly string uri;
    public ConnectBody(string uri) : base(true) { this.uri = uri; }
    protected override void OnWriteBodyContents(XmlDictionaryWriter w) {
        w.WriteStartElement("Connect", Ns.Connect);
        w.WriteElementString("Uri", Ns.Connect, uri);
        w.WriteEndElement();
    }
}

class PayloadBody : BodyWriter {
    readonly int seq; readonly string tag; readonly int size;
    public PayloadBody(int seq, string tag, int size) : base(true) { this.seq = seq; this.tag = tag; this.size = size; }
    protected override void OnWriteBodyContents(XmlDictionaryWriter w) {
        w.WriteStartElement("Audit", "http://contoso.example/audit");
        w.WriteElementString("Seq", "http://contoso.example/audit", seq.ToString());
        w.WriteElementString("Sender", "http://contoso.example/audit", tag + "#" + seq);
        w.WriteElementString("Pad", "http://contoso.example/audit", new string('x', size));
        w.WriteEndElement();
    }
}

static class Program {
    static int Main(string[] args) {
        if (args.Length < 4) { Console.Error.WriteLine("usage: OnewaySender.exe HOST:PORT sb://NS/PATH TOKEN N [--size B] [--tag T]"); return 2; }
        string hostPort = args[0], sbUri = args[1], token = args[2];
        int n = int.Parse(args[3]), size = 16; string tag = "mono";
        for (int i = 4; i + 1 < args.Length; i += 2) {
            if (args[i] == "--size") size = int.Parse(args[i + 1]);
            if (args[i] == "--tag") tag = args[i + 1];
        }
        var enc = new BinaryMessageEncodingBindingElement();
        enc.ReaderQuotas.MaxStringContentLength = 1 << 20;
        var tcp = new TcpTransportBindingElement { MaxReceivedMessageSize = 1 << 20, MaxBufferSize = 1 << 20 };
        var binding = new CustomBinding(enc, tcp) { SendTimeout = TimeSpan.FromSeconds(30) };
        string path = new Uri(sbUri).AbsolutePath;
        var address = new EndpointAddress("net.tcp://" + hostPort + path);
        var factory = new ChannelFactory<IRelaySender>(binding, address);
        var ch = factory.CreateChannel();
        var sw = Stopwatch.StartNew();
        try {
            var connect = Message.CreateMessage(MessageVersion.Soap12WSAddressing10, Ns.Connect + "/Connect", new ConnectBody(sbUri));
            connect.Headers.Add(new RelayAccessTokenHeader(token));
            if (!Check(ch.Request(connect), "connect")) return 1;
            Console.WriteLine("CONNECTED");
            for (int i = 0; i < n; i++) {
                var m = Message.CreateMessage(MessageVersion.Soap12WSAddressing10, "http://contoso.example/audit/Record", new PayloadBody(i, tag, size));
                if (!Check(ch.Request(m), "send " + i)) return 1;
                Console.WriteLine("SENT " + i);
            }
            ((IClientChannel)ch).Close();
        } catch (FaultException fe) {
            var code = fe.Code.SubCode != null ? fe.Code.SubCode.Name : fe.Code.Name;
            Console.WriteLine("FAULT " + code + " " + fe.Message.Replace("\n", " "));
            return 1;
        } catch (Exception e) {
            Console.WriteLine("ERROR " + e.GetType().Name + ": " + e.Message.Replace("\n", " "));
            return 1;
        }
        Console.WriteLine("SUMMARY sent=" + n + " elapsed=" + sw.Elapsed.TotalSeconds.ToString("F3") + "s");
        return 0;
    }

    static bool Check(Message reply, string what) {
        if (reply.IsFault) {
            var f = MessageFault.CreateFault(reply, 1 << 16);
            Console.WriteLine("FAULT " + f.Code.Name + " " + f.Reason.GetMatchingTranslation().Text);
            return false;
        }
        return true;
    }
}
