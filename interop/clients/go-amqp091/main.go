// amqp091-go scenarios for Warren's interop suite: one JSON line per scenario on stdout.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

var url = env("INTEROP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
var P = env("INTEROP_PREFIX", "it.go")

const largeLen = 5*1024*1024 + 7

func env(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

type M = map[string]interface{}
type mismatch struct {
	msg string
	obs M
}

func (m *mismatch) Error() string { return m.msg }

func norm(v interface{}) interface{} { // JSON round trip so int/int32/[]interface{} compare alike
	b, _ := json.Marshal(v)
	var o interface{}
	json.Unmarshal(b, &o)
	return o
}
func expect(obs M, kv ...interface{}) (M, error) {
	var bad []string
	for i := 0; i < len(kv); i += 2 {
		k := kv[i].(string)
		if !reflect.DeepEqual(norm(obs[k]), norm(kv[i+1])) {
			g, _ := json.Marshal(obs[k])
			w, _ := json.Marshal(kv[i+1])
			bad = append(bad, fmt.Sprintf("%s=%s (want %s)", k, g, w))
		}
	}
	if len(bad) > 0 {
		return obs, &mismatch{"unexpected " + strings.Join(bad, "; "), obs}
	}
	return obs, nil
}
func run(name string, f func() (M, error)) {
	done := make(chan struct{})
	var obs M
	var err error
	go func() { defer close(done); obs, err = f() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		err = errors.New("timeout 20s")
	}
	rec := M{"scenario": name, "ok": err == nil, "obs": obs, "err": ""}
	if err != nil {
		rec["err"] = err.Error()
	}
	b, _ := json.Marshal(rec)
	fmt.Println(string(b))
}
func must(err error) {
	if err != nil {
		panic(err)
	}
}
func dial() (*amqp.Connection, *amqp.Channel) {
	c, err := amqp.Dial(url)
	must(err)
	ch, err := c.Channel()
	must(err)
	return c, ch
}
func decl(ch *amqp.Channel, q string) amqp.Queue {
	r, err := ch.QueueDeclare(q, false, false, false, false, nil)
	must(err)
	return r
}
func pub(ch *amqp.Channel, ex, key, body string, p amqp.Publishing) {
	p.Body = []byte(body)
	must(ch.Publish(ex, key, false, false, p))
}
func drain(ch *amqp.Channel, q string) []string {
	out := []string{}
	for {
		d, ok, err := ch.Get(q, true)
		must(err)
		if !ok {
			return out
		}
		out = append(out, string(d.Body))
	}
}
func amqpErr(err error) M {
	var e *amqp.Error
	if errors.As(err, &e) {
		return M{"code": e.Code, "text": e.Reason}
	}
	return M{"error": fmt.Sprint(err)}
}
func safe(f func() (M, error)) func() (M, error) {
	return func() (obs M, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v", r)
			}
		}()
		return f()
	}
}

func main() {
	run("connect", safe(func() (M, error) {
		c, ch := dial()
		defer c.Close()
		caps, _ := c.Properties["capabilities"].(amqp.Table)
		on := []string{}
		for k, v := range caps {
			if v == true {
				on = append(on, k)
			}
		}
		sortStrings(on)
		_ = ch
		return M{"open": !c.IsClosed(), "capabilities": on}, nil
	}))
	run("declare", safe(func() (M, error) {
		c, ch := dial()
		defer c.Close()
		q := P + ".declare"
		r := decl(ch, q)
		for _, t := range []string{"direct", "fanout", "topic", "headers"} {
			must(ch.ExchangeDeclare(P+".x."+t, t, false, false, false, false, nil))
			must(ch.ExchangeDeclarePassive(P+".x."+t, t, false, false, false, false, nil))
		}
		pub(ch, "", q, "1", amqp.Publishing{})
		pub(ch, "", q, "2", amqp.Publishing{})
		time.Sleep(200 * time.Millisecond)
		r2, err := ch.QueueDeclarePassive(q, false, false, false, false, nil)
		must(err)
		n, err := ch.QueueDelete(q, false, false, false)
		must(err)
		for _, t := range []string{"direct", "fanout", "topic", "headers"} {
			must(ch.ExchangeDelete(P+".x."+t, false, false))
		}
		return expect(M{"declare_ok": []interface{}{r.Name, r.Messages, r.Consumers}, "passive_count": r2.Messages, "delete_count": n},
			"declare_ok", []interface{}{q, 0, 0}, "passive_count", 2, "delete_count", 2)
	}))
	run("routing", safe(func() (M, error) {
		c, ch := dial()
		defer c.Close()
		q1, q2 := P+".r1", P+".r2"
		decl(ch, q1)
		decl(ch, q2)
		X := func(t string) string { return P + ".rx." + t }
		for _, t := range []string{"direct", "fanout", "topic", "headers"} {
			must(ch.ExchangeDeclare(X(t), t, false, false, false, false, nil))
		}
		must(ch.QueueBind(q1, "a", X("direct"), false, nil))
		must(ch.QueueBind(q2, "b", X("direct"), false, nil))
		must(ch.QueueBind(q1, "", X("fanout"), false, nil))
		must(ch.QueueBind(q2, "", X("fanout"), false, nil))
		must(ch.QueueBind(q1, "x.*", X("topic"), false, nil))
		must(ch.QueueBind(q2, "x.#", X("topic"), false, nil))
		must(ch.QueueBind(q1, "", X("headers"), false, amqp.Table{"x-match": "all", "a": int32(1), "b": int32(2)}))
		must(ch.QueueBind(q2, "", X("headers"), false, amqp.Table{"x-match": "any", "a": int32(1), "b": int32(2)}))
		for _, k := range []string{"a", "b", "c"} {
			pub(ch, X("direct"), k, "direct-"+k, amqp.Publishing{})
		}
		pub(ch, X("fanout"), "zzz", "fanout", amqp.Publishing{})
		for _, k := range []string{"x.y", "x.y.z", "x"} {
			pub(ch, X("topic"), k, "topic-"+k, amqp.Publishing{})
		}
		pub(ch, X("headers"), "", "headers-a", amqp.Publishing{Headers: amqp.Table{"a": int32(1)}})
		pub(ch, X("headers"), "", "headers-ab", amqp.Publishing{Headers: amqp.Table{"a": int32(1), "b": int32(2)}})
		time.Sleep(200 * time.Millisecond)
		return expect(M{"q1": drain(ch, q1), "q2": drain(ch, q2)},
			"q1", []string{"direct-a", "fanout", "topic-x.y", "headers-ab"},
			"q2", []string{"direct-b", "fanout", "topic-x.y", "topic-x.y.z", "topic-x", "headers-a", "headers-ab"})
	}))
	run("properties", safe(func() (M, error) {
		c, ch := dial()
		defer c.Close()
		q := P + ".props"
		decl(ch, q)
		headers := amqp.Table{"s": "str", "i": int32(42), "b": true, "n": amqp.Table{"k": "v"}, "l": []interface{}{int32(1), "two"}}
		pub(ch, "", q, "props-body", amqp.Publishing{ContentType: "application/json", ContentEncoding: "utf-8", Headers: headers,
			DeliveryMode: 2, Priority: 5, CorrelationId: "corr-1", ReplyTo: "rq", Expiration: "60000", MessageId: "mid-1",
			Timestamp: time.Unix(1700000000, 0), Type: "t1", UserId: "guest", AppId: "interop"})
		time.Sleep(100 * time.Millisecond)
		d, ok, err := ch.Get(q, true)
		must(err)
		if !ok {
			return nil, errors.New("no message")
		}
		props := M{"content_type": d.ContentType, "content_encoding": d.ContentEncoding, "delivery_mode": d.DeliveryMode, "priority": d.Priority,
			"correlation_id": d.CorrelationId, "reply_to": d.ReplyTo, "expiration": d.Expiration, "message_id": d.MessageId,
			"timestamp": d.Timestamp.Unix(), "type": d.Type, "user_id": d.UserId, "app_id": d.AppId, "headers": d.Headers}
		return expect(M{"body": string(d.Body), "exchange": d.Exchange, "routing_key": d.RoutingKey, "redelivered": d.Redelivered,
			"message_count": d.MessageCount, "props": props}, "body", "props-body", "props", M{"content_type": "application/json",
			"content_encoding": "utf-8", "delivery_mode": 2, "priority": 5, "correlation_id": "corr-1", "reply_to": "rq", "expiration": "60000",
			"message_id": "mid-1", "timestamp": 1700000000, "type": "t1", "user_id": "guest", "app_id": "interop",
			"headers": M{"s": "str", "i": 42, "b": true, "n": M{"k": "v"}, "l": []interface{}{1, "two"}}})
	}))
	run("consume_prefetch", safe(func() (M, error) {
		c, ch := dial()
		defer c.Close()
		q := P + ".prefetch"
		decl(ch, q)
		must(ch.Qos(2, 0, false))
		for i := 0; i < 5; i++ {
			pub(ch, "", q, fmt.Sprintf("m%d", i), amqp.Publishing{})
		}
		ds, err := ch.Consume(q, "", false, false, false, false, nil)
		must(err)
		var got []amqp.Delivery
		deadline := time.After(5 * time.Second)
		grace := time.After(time.Hour)
		before := -1
		for len(got) < 5 {
			select {
			case d := <-ds:
				got = append(got, d)
				if len(got) == 2 && before < 0 {
					grace = time.After(400 * time.Millisecond)
				}
				if before >= 0 {
					d.Ack(false)
				}
			case <-grace:
				before = len(got)
				for _, d := range got {
					d.Ack(false)
				}
				grace = time.After(time.Hour)
			case <-deadline:
				return nil, errors.New("timeout")
			}
		}
		bodies, redel := []string{}, []bool{}
		for _, d := range got {
			bodies = append(bodies, string(d.Body))
			redel = append(redel, d.Redelivered)
		}
		return expect(M{"before_ack": before, "bodies": bodies, "redelivered": redel}, "before_ack", 2, "bodies", []string{"m0", "m1", "m2", "m3", "m4"})
	}))
	run("get", safe(func() (M, error) {
		c, ch := dial()
		defer c.Close()
		q := P + ".get"
		decl(ch, q)
		for i := 0; i < 3; i++ {
			pub(ch, "", q, fmt.Sprintf("g%d", i), amqp.Publishing{})
		}
		time.Sleep(100 * time.Millisecond)
		seq := []interface{}{}
		for i := 0; i < 3; i++ {
			d, _, err := ch.Get(q, false)
			must(err)
			seq = append(seq, []interface{}{string(d.Body), d.MessageCount, d.Redelivered})
			d.Ack(false)
		}
		_, ok, _ := ch.Get(q, false)
		return expect(M{"gets": seq, "empty": !ok}, "gets", []interface{}{[]interface{}{"g0", 2, false}, []interface{}{"g1", 1, false}, []interface{}{"g2", 0, false}}, "empty", true)
	}))
	run("nack_requeue", safe(func() (M, error) {
		c, ch := dial()
		defer c.Close()
		q := P + ".nack"
		decl(ch, q)
		pub(ch, "", q, "n1", amqp.Publishing{})
		pub(ch, "", q, "n2", amqp.Publishing{})
		time.Sleep(100 * time.Millisecond)
		seq := []interface{}{}
		d, _, _ := ch.Get(q, false)
		seq = append(seq, []interface{}{string(d.Body), d.Redelivered})
		d.Nack(false, true)
		d, _, _ = ch.Get(q, false)
		seq = append(seq, []interface{}{string(d.Body), d.Redelivered})
		d.Reject(false)
		d, _, _ = ch.Get(q, false)
		seq = append(seq, []interface{}{string(d.Body), d.Redelivered})
		d.Nack(false, false)
		_, ok, _ := ch.Get(q, false)
		return expect(M{"seq": seq, "empty": !ok}, "seq", []interface{}{[]interface{}{"n1", false}, []interface{}{"n1", true}, []interface{}{"n2", false}}, "empty", true)
	}))
	run("confirms", safe(func() (M, error) {
		c, ch := dial()
		defer c.Close()
		q := P + ".confirms"
		decl(ch, q)
		must(ch.Confirm(false))
		confs := ch.NotifyPublish(make(chan amqp.Confirmation, 20))
		for i := 0; i < 10; i++ {
			pub(ch, "", q, fmt.Sprintf("c%d", i), amqp.Publishing{})
		}
		acked, nacked := 0, 0
		for i := 0; i < 10; i++ {
			if (<-confs).Ack {
				acked++
			} else {
				nacked++
			}
		}
		r, err := ch.QueueDeclarePassive(q, false, false, false, false, nil)
		must(err)
		return expect(M{"acked": acked, "nacked": nacked, "count": r.Messages}, "acked", 10, "nacked", 0, "count", 10)
	}))
	run("mandatory", safe(func() (M, error) {
		c, ch := dial()
		defer c.Close()
		must(ch.Confirm(false))
		rets := ch.NotifyReturn(make(chan amqp.Return, 1))
		confs := ch.NotifyPublish(make(chan amqp.Confirmation, 1))
		must(ch.Publish("", P+".nowhere", true, false, amqp.Publishing{Body: []byte("ret")}))
		r := <-rets
		conf := <-confs
		return expect(M{"returns": []M{{"reply_code": r.ReplyCode, "reply_text": r.ReplyText, "exchange": r.Exchange, "routing_key": r.RoutingKey, "body": string(r.Body)}}, "confirm_acked": conf.Ack},
			"returns", []M{{"reply_code": 312, "reply_text": "NO_ROUTE", "exchange": "", "routing_key": P + ".nowhere", "body": "ret"}}, "confirm_acked", true)
	}))
	run("competing", safe(func() (M, error) {
		c, ch := dial()
		defer c.Close()
		q := P + ".work"
		decl(ch, q)
		var mu sync.Mutex
		counts := []int{0, 0}
		seen := map[string]bool{}
		total := 0
		for i := 0; i < 2; i++ {
			cch, err := c.Channel()
			must(err)
			must(cch.Qos(1, 0, false))
			ds, err := cch.Consume(q, "", false, false, false, false, nil)
			must(err)
			go func(i int, ds <-chan amqp.Delivery) {
				for d := range ds {
					mu.Lock()
					counts[i]++
					seen[string(d.Body)] = true
					total++
					mu.Unlock()
					time.Sleep(5 * time.Millisecond)
					d.Ack(false)
				}
			}(i, ds)
		}
		for i := 0; i < 20; i++ {
			pub(ch, "", q, fmt.Sprintf("w%d", i), amqp.Publishing{})
		}
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			mu.Lock()
			t := total
			mu.Unlock()
			if t >= 20 {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		return expect(M{"total": total, "distinct": len(seen), "both_busy": counts[0] >= 5 && counts[1] >= 5}, "total", 20, "distinct", 20, "both_busy", true)
	}))
	run("rpc", safe(func() (M, error) {
		c, srv := dial()
		defer c.Close()
		cli, err := c.Channel()
		must(err)
		q := P + ".rpc"
		decl(srv, q)
		reqs, err := srv.Consume(q, "", false, false, false, false, nil)
		must(err)
		go func() {
			for d := range reqs {
				srv.Publish("", d.ReplyTo, false, false, amqp.Publishing{CorrelationId: d.CorrelationId, Body: append([]byte("reply:"), d.Body...)})
				d.Ack(false)
			}
		}()
		rq, err := cli.QueueDeclare("", false, false, true, false, nil)
		must(err)
		reps, err := cli.Consume(rq.Name, "", true, false, false, false, nil)
		must(err)
		pub(cli, "", q, "ping", amqp.Publishing{ReplyTo: rq.Name, CorrelationId: "c-1"})
		r := <-reps
		want := "amq.gen-?"
		if strings.HasPrefix(rq.Name, "amq.gen-") {
			want = rq.Name
		}
		return expect(M{"reply_queue": rq.Name, "replies": [][]string{{r.CorrelationId, string(r.Body)}}}, "reply_queue", want, "replies", [][]string{{"c-1", "reply:ping"}})
	}))
	run("large", safe(func() (M, error) {
		c, ch := dial()
		defer c.Close()
		q := P + ".large"
		decl(ch, q)
		body := make([]byte, largeLen)
		for i := 0; i < largeLen-largeLen%251; i++ {
			body[i] = byte(((i%251)*7 + 3) % 251)
		}
		must(ch.Publish("", q, false, false, amqp.Publishing{Body: body}))
		var got []byte
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			d, ok, err := ch.Get(q, true)
			must(err)
			if ok {
				got = d.Body
				break
			}
		}
		a, b := sha256.Sum256(got), sha256.Sum256(body)
		return expect(M{"len": len(got), "sha256_ok": bytes.Equal(a[:], b[:])}, "len", largeLen, "sha256_ok", true)
	}))
	run("err_404", safe(func() (M, error) {
		c, ch := dial()
		defer c.Close()
		_, err := ch.QueueDeclarePassive(P+".missing", false, false, false, false, nil)
		obs := amqpErr(err)
		obs["conn_open"] = !c.IsClosed()
		return expect(obs, "code", 404, "text", "NOT_FOUND - no queue '"+P+".missing' in vhost '/'", "conn_open", true)
	}))
	run("err_406", safe(func() (M, error) {
		c, ch := dial()
		defer c.Close()
		q := P + ".q406"
		decl(ch, q)
		_, err := ch.QueueDeclare(q, true, false, false, false, nil)
		obs := amqpErr(err)
		ch2, _ := c.Channel()
		ch2.QueueDelete(q, false, false, false)
		return expect(obs, "code", 406, "text", "PRECONDITION_FAILED - inequivalent arg 'durable' for queue '"+q+"' in vhost '/': received 'true' but current is 'false'")
	}))
	run("err_403", safe(func() (M, error) {
		c, err := amqp.Dial(strings.Replace(url, "guest:guest@", "guest:wrong@", 1))
		if err == nil {
			c.Close()
			return M{"raised": false}, errors.New("connected with a wrong password")
		}
		obs := amqpErr(err)
		return expect(obs, "code", 403, "text", "username or password not allowed")
	}))
	run("vhost_user", safe(vhostUser))
}

// vhost_user: the non-default user and vhost of interop/definitions.json.
func vhostUser() (M, error) {
	appURL := env("INTEROP_APP_URL", "amqp://interop-app:interop-app-secret@127.0.0.1:5672/interop-app")
	user, vhost := env("INTEROP_APP_USER", "interop-app"), env("INTEROP_APP_VHOST", "interop-app")
	rootURL := appURL[:strings.LastIndex(appURL, "/")] + "/%2f" // the same user on vhost /
	q, denied := "interop.app."+P, P+".denied"
	c, err := amqp.Dial(appURL)
	must(err)
	ch, err := c.Channel()
	must(err)
	r := decl(ch, q)
	obs := M{"declare_ok": []interface{}{r.Name, r.Messages, r.Consumers}}
	pub(ch, "", q, "vhost-user", amqp.Publishing{})
	var got interface{}
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		d, ok, err := ch.Get(q, true)
		must(err)
		if ok {
			got = string(d.Body)
			break
		}
	}
	obs["got"] = got
	ch2, err := c.Channel()
	must(err)
	_, err = ch2.QueueDeclare(denied, false, false, false, false, nil)
	x := amqpErr(err)
	obs["refused_code"], obs["refused_text"] = x["code"], x["text"]
	obs["conn_open"] = !c.IsClosed()
	ch3, err := c.Channel()
	must(err)
	ch3.QueueDelete(q, false, false, false)
	c.Close()
	c2, err := amqp.Dial(rootURL)
	if err == nil {
		c2.Close()
	}
	x = amqpErr(err)
	obs["root_code"], obs["root_text"] = x["code"], x["text"]
	tail := "access to queue '" + denied + "' in vhost '" + vhost + "' refused for user '" + user + "'"
	if t := fmt.Sprint(obs["refused_text"]); t != "ACCESS_REFUSED - "+tail && t != "ACCESS_REFUSED - configure "+tail {
		return obs, &mismatch{"refused_text " + t, obs}
	}
	// amqp091-go replaces the server's 530 by its own ErrVhost (403 "no access to this vhost"),
	// as it replaces a refused login by ErrCredentials.
	return expect(obs, "declare_ok", []interface{}{q, 0, 0}, "got", "vhost-user", "refused_code", 403, "conn_open", true,
		"root_code", 403, "root_text", "no access to this vhost")
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
