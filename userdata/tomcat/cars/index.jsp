<%--
  The seed's "cars" app, as one JSP page on Ubuntu's Tomcat (compiled by Tomcat's own
  JSP compiler: no build step). Every request borrows a connection from the container's
  pool (java:comp/env/jdbc/cars, the Tomcat JDBC pool of cars.xml), so the pool's JMX
  metrics move with the traffic: GET lists the newest cars, POST adds one (make, model,
  year) and redirects back. A database error is a 500, counted in tomcat.error_count.
--%><%@ page contentType="text/html; charset=UTF-8" pageEncoding="UTF-8" session="false"
    import="java.sql.Connection,java.sql.PreparedStatement,java.sql.ResultSet,javax.naming.InitialContext,javax.sql.DataSource"
%><%!
    static final int LISTED = 50;

    static String html(String text) {
        StringBuilder out = new StringBuilder(text.length());
        for (char c : text.toCharArray()) {
            switch (c) {
                case '<': out.append("&lt;"); break;
                case '>': out.append("&gt;"); break;
                case '&': out.append("&amp;"); break;
                case '"': out.append("&quot;"); break;
                case '\'': out.append("&#39;"); break;
                default: out.append(c);
            }
        }
        return out.toString();
    }

    /** A make or model: 1 to 40 printable characters, else null. */
    static String name(String value) {
        if (value == null) return null;
        value = value.trim();
        return value.length() >= 1 && value.length() <= 40 && value.chars().noneMatch(Character::isISOControl)
            ? value : null;
    }
%><%
    request.setCharacterEncoding("UTF-8");
    DataSource pool = (DataSource) new InitialContext().lookup("java:comp/env/jdbc/cars");
    if ("POST".equals(request.getMethod())) {
        String make = name(request.getParameter("make"));
        String model = name(request.getParameter("model"));
        String year = request.getParameter("year");
        if (make == null || model == null || year == null || !year.matches("(18|19|20)[0-9]{2}")) {
            response.sendError(400, "make and model: 1 to 40 characters; year: four digits, 1800 to 2099");
            return;
        }
        try (Connection db = pool.getConnection();
             PreparedStatement insert = db.prepareStatement("INSERT INTO cars (make, model, year) VALUES (?, ?, ?)")) {
            insert.setString(1, make);
            insert.setString(2, model);
            insert.setInt(3, Integer.parseInt(year));
            insert.executeUpdate();
        }
        response.setStatus(303);
        response.setHeader("Location", request.getContextPath() + "/");
        return;
    }
    StringBuilder rows = new StringBuilder();
    int count = 0;
    try (Connection db = pool.getConnection();
         PreparedStatement select = db.prepareStatement(
             "SELECT id, make, model, year FROM cars ORDER BY id DESC LIMIT " + LISTED);
         ResultSet cars = select.executeQuery()) {
        while (cars.next()) {
            count++;
            rows.append("<tr><td>").append(cars.getLong("id"))
                .append("</td><td>").append(html(cars.getString("make")))
                .append("</td><td>").append(html(cars.getString("model")))
                .append("</td><td>").append(cars.getInt("year")).append("</td></tr>\n");
        }
    }
%><!DOCTYPE html>
<html lang="en">
<head><meta charset="UTF-8"><title>Cars</title></head>
<body>
<h1>Cars</h1>
<p id="count" data-cars="<%= count %>">The <%= count %> newest cars, read from MySQL through the pool.</p>
<table>
<tr><th>id</th><th>make</th><th>model</th><th>year</th></tr>
<%= rows %></table>
<h2>Add a car</h2>
<form method="post" action="<%= html(request.getContextPath()) %>/">
<label>Make <input name="make" maxlength="40" required></label>
<label>Model <input name="model" maxlength="40" required></label>
<label>Year <input name="year" pattern="(18|19|20)[0-9]{2}" required></label>
<button type="submit">Add</button>
</form>
</body>
</html>
