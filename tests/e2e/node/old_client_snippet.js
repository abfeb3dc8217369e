var socket = io("http://your.server.here"),
token = localStorage.getItem("token") || "";
socket.emit("getToken", {token: localStorage.getItem("token") || ""});
socket.on("gotToken", function(message){
console.log(message);
if(message.token != "") {
localStorage.setItem("token", message.token);
token = message.token;
}
});
